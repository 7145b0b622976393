"""The two studies built on the layers below: the failure-mode lab (a planted reversal analysed by the
study's own code) and the small-data study (six models on nine images).
"""
