"""Tests of helpers.studies.small_data.models: the six architectures, checkpoint loading and learnable prompting."""

from __future__ import annotations


import pytest
import torch

from helpers.studies.small_data import models as sm


@pytest.mark.parametrize("name", ["unet", "deeplabv3plus", "segformer"])
@pytest.mark.parametrize("size", [32, 48])
def test_scratch_models_output_logits_at_input_size(name, size):
    model = sm.build_model(name, n_classes=4, width=8, dropout=0.2, seed=0).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, size, size))
    assert out.shape == (2, 4, size, size)
    assert torch.isfinite(out).all()
    # Every model has dropout, so Monte Carlo dropout applies.
    assert any(isinstance(m, (torch.nn.Dropout, torch.nn.Dropout2d)) for m in model.modules())


@pytest.mark.parametrize("name", ["unet", "deeplabv3plus", "segformer"])
def test_seeded_initialisation_and_global_rng_untouched(name):
    state = torch.random.get_rng_state()
    a = sm.build_model(name, width=8, seed=1)
    assert torch.equal(torch.random.get_rng_state(), state)  # fork_rng: global stream unchanged
    b = sm.build_model(name, width=8, seed=1)
    c = sm.build_model(name, width=8, seed=2)
    pa, pb, pc = (torch.cat([p.flatten() for p in m.parameters()]) for m in (a, b, c))
    assert torch.equal(pa, pb) and not torch.equal(pa, pc)


def test_deeplab_has_aspp_and_dilation():
    from monai.networks.blocks import SimpleASPP

    model = sm.build_model("deeplabv3plus", width=8)
    assert any(isinstance(m, SimpleASPP) for m in model.modules())
    dilated = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.dilation == (2, 2)]
    assert dilated  # the last encoder stage is dilated instead of strided


def test_input_validation():
    model = sm.build_model("unet", width=8)
    with pytest.raises(ValueError, match=r"must be divisible by 8"):
        model(torch.rand(1, 3, 30, 30))
    with pytest.raises(ValueError, match=r"x must be a tensor \(batch, 3, y, x\)"):
        model(torch.rand(1, 1, 32, 32))
    with pytest.raises(ValueError, match="model must be one of"):
        sm.build_model("resnet")
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\)"):
        sm.build_model("unet", dropout=1.0)
    with pytest.raises(ValueError, match="width must be an integer >= 2"):
        sm.build_model("unet", width=1)


def test_sam_without_checkpoint_is_not_run():
    assert sm.NEEDS_CHECKPOINT == {"sam"}  # medsam, medsam_unet: the packaged LiteMedSAM weights (test_litemedsam)
    assert sm.model_status("sam") == sm.NOT_RUN_NO_CHECKPOINT == "not run: no checkpoint given"
    assert sm.model_status("sam", "/nonexistent/ckpt.pth").startswith("not run: checkpoint not found")
    with pytest.raises(ValueError, match="model 'sam': not run: no checkpoint given"):
        sm.build_model("sam")


def test_input_size():
    assert sm.input_size("segformer", cnn_size=128, sam_size=1024) == 128
    assert sm.input_size("sam", cnn_size=128, sam_size=1024) == 1024
    assert sm.input_size("medsam", cnn_size=128, sam_size=1024) == 256  # LiteMedSAM's weights
    assert sm.input_size("medsam_unet", cnn_size=128, sam_size=1024) == 256


# --------------------------------------------------------------------------------------------------------------
# SAM / MedSAM from a saved tiny checkpoint
# --------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    from transformers import SamModel

    torch.manual_seed(0)
    model = SamModel(sm.tiny_sam_config(64))
    folder = tmp_path_factory.mktemp("tiny_sam")
    model.save_pretrained(folder)
    return folder, model


def test_load_transformers_folder(tiny_checkpoint):
    folder, original = tiny_checkpoint
    loaded = sm.load_sam_checkpoint(folder)
    a, b = original.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_prompted_sam_forward_and_learnable_prompts(tiny_checkpoint):
    folder, _ = tiny_checkpoint
    model = sm.build_model("sam", checkpoint=folder, n_classes=4, dropout=0.1)
    assert isinstance(model, sm.PromptedSam)
    assert model.prompt_tokens.shape == (4, 4, 32)  # classes x tokens x hidden
    # Frozen image encoder, trainable prompts and decoder.
    assert not any(p.requires_grad for p in model.sam.vision_encoder.parameters())
    out = model(torch.rand(2, 3, 64, 64))
    assert out.shape == (2, 4, 64, 64)
    out.logsumexp(1).mean().backward()
    assert model.prompt_tokens.grad is not None and model.prompt_tokens.grad.abs().sum() > 0
    # One learnable prompt per class: the class logits differ.
    assert not torch.allclose(out[:, 1], out[:, 2])


def test_sam_wrong_input_size(tiny_checkpoint):
    model = sm.build_model("sam", checkpoint=tiny_checkpoint[0])
    with pytest.raises(ValueError, match="x must be 64x64 for this checkpoint"):
        model(torch.rand(1, 3, 32, 32))


def test_load_pth_with_transformers_names(tiny_checkpoint, tmp_path):
    _, original = tiny_checkpoint
    path = tmp_path / "model.pth"
    torch.save({"model": original.state_dict()}, path)
    loaded = sm.load_sam_checkpoint(path, config=sm.tiny_sam_config(64))
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in original.state_dict().items())


def test_convert_original_key_names():
    # Hand-written original segment-anything names -> transformers names.
    original = {
        "image_encoder.blocks.0.norm1.weight": 1,
        "image_encoder.patch_embed.proj.weight": 2,
        "image_encoder.neck.0.weight": 3,
        "image_encoder.neck.1.weight": 4,
        "mask_decoder.output_hypernetworks_mlps.0.layers.0.weight": 5,
        "mask_decoder.output_hypernetworks_mlps.3.layers.1.weight": 6,
        "mask_decoder.output_hypernetworks_mlps.3.layers.2.bias": 7,
        "mask_decoder.iou_prediction_head.layers.1.weight": 8,
        "mask_decoder.output_upscaling.0.weight": 9,
        "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix": 10,
        "prompt_encoder.point_embeddings.0.weight": 11,
        "prompt_encoder.mask_downscaling.3.weight": 12,
        "pixel_mean": 0,
    }
    converted = sm.convert_original_sam_state_dict(original)
    assert converted == {
        "vision_encoder.layers.0.layer_norm1.weight": 1,
        "vision_encoder.patch_embed.projection.weight": 2,
        "vision_encoder.neck.conv1.weight": 3,
        "vision_encoder.neck.layer_norm1.weight": 4,
        "mask_decoder.output_hypernetworks_mlps.0.proj_in.weight": 5,
        "mask_decoder.output_hypernetworks_mlps.3.layers.0.weight": 6,
        "mask_decoder.output_hypernetworks_mlps.3.proj_out.bias": 7,
        "mask_decoder.iou_prediction_head.layers.0.weight": 8,
        "mask_decoder.upscale_conv1.weight": 9,
        "prompt_encoder.shared_embedding.positional_embedding": 10,
        "shared_image_embedding.positional_embedding": 10,
        "prompt_encoder.point_embed.0.weight": 11,
        "prompt_encoder.mask_embed.conv2.weight": 12,
    }


def test_converted_names_exist_in_transformers_model():
    # The converted names must be real SamModel parameters (guards against renames in transformers).
    from transformers import SamModel

    names = set(SamModel(sm.tiny_sam_config(64)).state_dict())
    converted = sm.convert_original_sam_state_dict({
        "image_encoder.blocks.1.attn.qkv.weight": 0,
        "image_encoder.blocks.1.mlp.lin1.weight": 0,
        "image_encoder.neck.3.bias": 0,
        "mask_decoder.transformer.layers.0.cross_attn_token_to_image.q_proj.weight": 0,
        "mask_decoder.transformer.final_attn_token_to_image.k_proj.weight": 0,
        "mask_decoder.transformer.norm_final_attn.weight": 0,
        "mask_decoder.iou_prediction_head.layers.2.bias": 0,
        "mask_decoder.output_upscaling.1.weight": 0,
        "prompt_encoder.no_mask_embed.weight": 0,
        "prompt_encoder.not_a_point_embed.weight": 0,
        "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix": 0,
    })
    assert set(converted) <= names, set(converted) - names


def test_load_errors(tmp_path, tiny_checkpoint):
    with pytest.raises(ValueError, match="checkpoint not found"):
        sm.load_sam_checkpoint(tmp_path / "missing.pth")
    (tmp_path / "folder").mkdir()
    with pytest.raises(ValueError, match="checkpoint folder has no config.json"):
        sm.load_sam_checkpoint(tmp_path / "folder")
    (tmp_path / "weights.npz").write_bytes(b"x")
    with pytest.raises(ValueError, match="unknown checkpoint type '.npz'"):
        sm.load_sam_checkpoint(tmp_path / "weights.npz")
    bad = tmp_path / "bad.pth"
    torch.save({"vision_encoder.pos_embed": torch.zeros(1)}, bad)
    with pytest.raises(ValueError, match="state dict does not match the SAM configuration"):
        sm.load_sam_checkpoint(bad, config=sm.tiny_sam_config(64))
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="cannot read checkpoint"):
        sm.load_sam_checkpoint(garbage)


def _to_original_name(key: str) -> str | None:
    """transformers SamModel name -> original segment-anything name, written from the original module layout
    (ImageEncoderViT blocks/norm1/neck.0-3, PromptEncoder pe_layer/point_embeddings/mask_downscaling.0-6,
    MaskDecoder output_upscaling.0/1/3 and MLP layers.0-2)."""
    if key == "shared_image_embedding.positional_embedding":
        return None  # transformers keeps a second copy of the prompt encoder's matrix
    if key.startswith("vision_encoder."):
        key = "image_encoder." + key[len("vision_encoder."):]
        key = key.replace(".layers.", ".blocks.").replace("patch_embed.projection", "patch_embed.proj")
        for hf, orig in (("neck.conv1", "neck.0"), ("neck.layer_norm1", "neck.1"), ("neck.conv2", "neck.2"),
                         ("neck.layer_norm2", "neck.3")):
            key = key.replace(hf, orig)
        return key.replace(".layer_norm", ".norm")
    if key.startswith("prompt_encoder."):
        key = key.replace("shared_embedding.positional_embedding", "pe_layer.positional_encoding_gaussian_matrix")
        key = key.replace("point_embed.", "point_embeddings.")
        for hf, orig in (("mask_embed.conv1", "mask_downscaling.0"), ("mask_embed.layer_norm1", "mask_downscaling.1"),
                         ("mask_embed.conv2", "mask_downscaling.3"), ("mask_embed.layer_norm2", "mask_downscaling.4"),
                         ("mask_embed.conv3", "mask_downscaling.6")):
            key = key.replace(hf, orig)
        return key
    for hf, orig in (("upscale_conv1", "output_upscaling.0"), ("upscale_layer_norm", "output_upscaling.1"),
                     ("upscale_conv2", "output_upscaling.3")):
        key = key.replace(hf, orig)
    if "output_hypernetworks_mlps" in key or "iou_prediction_head" in key:
        key = key.replace(".layers.0.", ".layers.1.").replace(".proj_in.", ".layers.0.")
        key = key.replace(".proj_out.", ".layers.2.")
    return key.replace(".layer_norm", ".norm")


def test_load_original_segment_anything_pth(tiny_checkpoint, tmp_path):
    # A full original-format state dict (names as in segment-anything / MedSAM .pth files, plus the
    # pixel_mean/pixel_std buffers) loads strictly and reproduces every weight.
    _, original = tiny_checkpoint
    state = {}
    for key, value in original.state_dict().items():
        name = _to_original_name(key)
        if name is not None:
            state[name] = value
    state["pixel_mean"], state["pixel_std"] = torch.zeros(3, 1, 1), torch.ones(3, 1, 1)
    assert "image_encoder.blocks.0.norm1.weight" in state and "mask_decoder.transformer.norm_final_attn.weight" in state
    path = tmp_path / "medsam_like.pth"
    torch.save(state, path)
    loaded = sm.load_sam_checkpoint(path, config=sm.tiny_sam_config(64))
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in original.state_dict().items())


def test_registry_is_the_model_list_and_builds_each_trainable_architecture():
    from helpers.learning.models import ModelFamily

    assert sm.MODELS == ("unet", "deeplabv3plus", "segformer", "sam", "medsam", "medsam_unet")
    assert all(isinstance(f, ModelFamily) and f.name == n for n, f in sm.REGISTRY.items())
    for name, cls in (("unet", sm.UNet), ("deeplabv3plus", sm.DeepLabV3Plus), ("segformer", sm.SegFormer)):
        assert type(sm.build_model(name, width=4)) is cls
