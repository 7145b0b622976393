"""The small-data study: N = 9 images, six architectures, cross-validation, HPO, statistics and explanations.
"""
