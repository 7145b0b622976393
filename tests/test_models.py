import numpy as np
import pytest
import torch

from helpers.learning import models
from helpers.compute.runtime import torch_settings
from helpers.base.plots import MODEL_COLORS


@pytest.fixture(autouse=True)
def _threads():
    with torch_settings(num_threads=1, deterministic=None):
        yield


def test_registry_names_match_the_study_and_plot_colours():
    assert tuple(models.REGISTRY) == models.MODEL_NAMES
    assert set(models.MODEL_NAMES) <= set(MODEL_COLORS)  # every family has its fixed colour


@pytest.mark.parametrize("name", models.MODEL_NAMES)
@pytest.mark.parametrize("in_channels", [1, 3])
def test_each_family_runs_forward_and_backward(name, in_channels):
    torch.manual_seed(0)
    net = models.build_model(name, in_channels=in_channels, size="smoke")
    side = models.min_input_size(name)  # 2 x deepest down-sampling: 64 SwinUNETR, 8 U-Nets (smoke)
    x = torch.randn(2, in_channels, side, side)
    y = net(x)
    assert y.shape == (2, 1, side, side)
    y.square().mean().backward()
    grads = [p.grad for p in net.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0


@pytest.mark.parametrize("name", models.MODEL_NAMES)
def test_forward_padded_accepts_sizes_that_are_not_multiples(name):
    torch.manual_seed(0)
    net = models.build_model(name, in_channels=1).eval()
    x = torch.randn(1, 1, 37, 45)
    with torch.no_grad():
        y = models.forward_padded(net, x, models.input_multiple(name), min_size=models.min_input_size(name))
    assert y.shape == (1, 1, 37, 45)


@pytest.mark.parametrize("name", models.MODEL_NAMES)
def test_models_are_channels_last_and_compute_what_the_default_layout_computes(name):
    """build_model gives weights in MEMORY_FORMAT (channels-last) and forward_padded feeds it channels-last
    batches; the same weights in torch's default layout give the same logits up to summation order."""
    torch.manual_seed(0)
    net = models.build_model(name, in_channels=2, size="smoke").eval()
    convs = [m.weight for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous()
                         for w in convs if w.shape[1] > 1 and w.shape[-1] * w.shape[-2] > 1)
    x = torch.randn(2, 2, 37, 45)
    assert models.as_input(x).is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(models.as_input(x), x)
    reference = models.build_model(name, in_channels=2, size="smoke").eval()
    reference.load_state_dict(net.state_dict())
    reference = reference.to(memory_format=torch.contiguous_format)
    assert all(m.weight.is_contiguous() for m in reference.modules() if isinstance(m, torch.nn.Conv2d))
    multiple, min_size = models.input_multiple(name, "smoke"), models.min_input_size(name, "smoke")
    with torch.no_grad():
        got = models.forward_padded(net, x, multiple, min_size=min_size)
        padded = models.pad_to_multiple(x, multiple, min_size=min_size)
        expected = models.crop_to_shape(reference(padded.contiguous()), (37, 45))
    assert got.shape == expected.shape == (2, 1, 37, 45)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_input_multiple_is_two_to_the_number_of_strides():
    # smoke strides (2, 2) -> 4; default (2, 2, 2) -> 8; paper (2, 2, 2, 2) -> 16; SwinUNETR 2 * 2**4 = 32
    assert models.input_multiple("unet", "smoke") == 4
    assert models.input_multiple("attention_unet", "default") == 8
    assert models.input_multiple("resunet", "paper") == 16
    assert models.input_multiple("hybrid_transformer", "smoke") == 32


def test_unet_levels_add_a_full_resolution_first_level():
    # the size's widths (16, 32, 64, 128) and strides (2, 2, 2), with a stride-1 level first and the deepest width
    # repeated at the bottom
    assert models.unet_levels("default") == ((16, 32, 64, 128, 128), (1, 2, 2, 2))
    assert models.unet_levels("smoke") == ((8, 16, 32, 32), (1, 2, 2))
    assert models.input_multiple("unet", "default") == models.input_multiple("attention_unet", "default") == 8


def _feature_maps(net, side: int) -> set[tuple[int, int]]:
    """(channels, side of the map) of every 2D convolution's output in one forward pass."""
    seen, hooks = set(), []
    for module in net.modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            hooks.append(module.register_forward_hook(lambda m, i, o: seen.add((o.shape[1], o.shape[-1]))))
    with torch.no_grad():
        net.eval()(torch.zeros(1, 1, side, side))
    for hook in hooks:
        hook.remove()
    return seen


@pytest.mark.parametrize("name", ["unet", "resunet"])
def test_unets_have_the_attention_unets_feature_maps(name):
    # default size on a 64 x 64 input: 16 channels at 64, 32 at 32, 64 at 16, 128 at 8 (MONAI's UNet with the
    # size's strides as they are would have no 64 x 64 feature map at all)
    expected = {(16, 64), (32, 32), (64, 16), (128, 8)}
    unet = _feature_maps(models.build_model(name, in_channels=1, size="default"), 64)
    attention = _feature_maps(models.build_model("attention_unet", in_channels=1, size="default"), 64)
    assert expected <= unet and expected <= attention
    assert {side for _, side in unet} == {side for _, side in attention} == {64, 32, 16, 8}


@pytest.mark.parametrize("name", ["unet", "resunet", "attention_unet", "hybrid_transformer"])
def test_every_family_normalises_with_batch_norm(name):
    # MONAI's AttentionUnet hard-codes batch norm; UNet and SwinUNETR's decoder default to instance norm and are
    # set to batch norm, so that no family normalises each patch on its own
    # (MONAI's AttentionUnet keeps Convolution's default instance norm in the merge convolution of each decoder
    # level, which is left as MONAI builds it)
    net = models.build_model(name, in_channels=1, size="smoke")
    kinds = {type(m).__name__ for m in net.modules()}
    instance = [n for n, m in net.named_modules() if type(m).__name__.startswith("InstanceNorm")]
    assert "BatchNorm2d" in kinds
    if name == "attention_unet":
        assert len(instance) == 2 and all(".merge." in n for n in instance)  # smoke size: two decoder levels
    else:
        assert instance == []


def test_residual_unet_differs_from_unet_only_in_residual_units():
    plain = models.model_kwargs("unet", in_channels=1)
    residual = models.model_kwargs("resunet", in_channels=1)
    assert plain.pop("num_res_units") == 0 and residual.pop("num_res_units") == 2
    assert plain == residual


def test_count_parameters_hand_derived():
    # Conv2d(1, 2, 3): 1*2*3*3 weights + 2 biases = 20; Linear(4, 3): 12 + 3 = 15
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Linear(4, 3))
    assert models.count_parameters(net) == 35
    net[1].weight.requires_grad_(False)
    assert models.count_parameters(net) == 23
    assert models.count_parameters(net, trainable_only=False) == 35


def test_parameter_counts_grow_with_size():
    for name in models.MODEL_NAMES:
        counts = [
            models.count_parameters(models.build_model(name, in_channels=1, size=s)) for s in ("smoke", "default")
        ]
        assert counts[0] < counts[1]


def test_same_seed_same_initial_weights():
    torch.manual_seed(3)
    a = models.build_model("attention_unet", in_channels=1)
    torch.manual_seed(3)
    b = models.build_model("attention_unet", in_channels=1)
    torch.manual_seed(4)
    c = models.build_model("attention_unet", in_channels=1)
    pa, pb, pc = (torch.cat([p.flatten() for p in m.parameters()]) for m in (a, b, c))
    assert torch.equal(pa, pb)
    assert not torch.equal(pa, pc)


def test_pad_to_multiple_pads_zeros_at_the_end_and_crop_inverts():
    x = torch.arange(35, dtype=torch.float32).reshape(1, 1, 5, 7) + 1
    padded = models.pad_to_multiple(x, 4)
    assert padded.shape == (1, 1, 8, 8)  # 5 -> 8, 7 -> 8
    assert torch.equal(padded[..., :5, :7], x)
    assert float(padded[..., 5:, :].abs().sum()) == 0 and float(padded[..., :, 7:].abs().sum()) == 0
    assert torch.equal(models.crop_to_shape(padded, (5, 7)), x)
    assert models.pad_to_multiple(x, 1) is x
    # min_size 9 with multiple 4: 5 -> max(5, 9) = 9 -> 12, 7 -> 12
    assert models.pad_to_multiple(x, 4, min_size=9).shape == (1, 1, 12, 12)


def test_min_input_size():
    assert models.min_input_size("hybrid_transformer") == 64
    assert models.min_input_size("unet", "default") == 16


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"name": "vnet", "in_channels": 1}, "model name must be one of"),
        ({"name": "unet", "in_channels": 1, "size": "huge"}, "size must be one of"),
        ({"name": "unet", "in_channels": 0}, "in_channels must be a positive integer"),
        ({"name": "unet", "in_channels": 1, "out_channels": 1.5}, "out_channels must be a positive integer"),
        ({"name": "unet", "in_channels": 1, "spatial_dims": 3}, "spatial_dims must be 2"),
    ],
)
def test_build_model_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        models.build_model(**kwargs)


def test_helpers_reject_bad_arguments():
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        models.count_parameters(np.zeros(3))
    with pytest.raises(ValueError, match="multiple must be a positive integer"):
        models.pad_to_multiple(torch.zeros(1, 4, 4), 0)


def test_describe_models_lists_each_family_with_its_parameter_count():
    table = models.describe_models(in_channels=1, names=("unet", "resunet"))
    assert table["model"].tolist() == ["unet", "resunet"]
    torch.manual_seed(0)
    assert table["params"].tolist() == [
        models.count_parameters(models.build_model(n, in_channels=1)) for n in ("unet", "resunet")
    ]
    assert table["monai_class"].tolist() == ["monai.networks.nets.UNet"] * 2


def test_output_bias_gives_the_foreground_prior_hand_derived():
    # a network that outputs 0 everywhere: the wrapped logits are log(0.01 / 0.99), so sigmoid = 0.01 exactly
    class Zero(torch.nn.Module):
        def forward(self, x):
            return torch.zeros_like(x[:, :1])

    net = models.WithOutputBias(Zero(), 0.01)
    with torch.no_grad():
        assert float(torch.sigmoid(net(torch.ones(1, 1, 2, 2))).mean()) == pytest.approx(0.01, rel=1e-6)
    assert models.count_parameters(net) == 1


def test_foreground_prior_none_returns_the_bare_monai_network():
    from monai.networks.nets import SwinUNETR, UNet

    torch.manual_seed(0)
    bare = models.build_model("unet", in_channels=1, foreground_prior=None)
    wrapped = models.build_model("unet", in_channels=1)
    assert isinstance(bare, UNet) and isinstance(wrapped.network, UNet)
    assert models.count_parameters(wrapped) == models.count_parameters(bare) + 1
    assert isinstance(models.build_model("hybrid_transformer", in_channels=1, foreground_prior=None), SwinUNETR)
    with pytest.raises(ValueError, match=r"foreground_prior must lie in \(0, 1\)"):
        models.build_model("unet", in_channels=1, foreground_prior=1.0)


@pytest.mark.parametrize("size", ["default", "paper"])
def test_capacities_within_an_order_of_magnitude(size):
    # the study's sizes compare families, not capacities: largest / smallest parameter count < 10
    for in_channels in (1, 2, 3):
        counts = [models.count_parameters(models.build_model(n, in_channels=in_channels, size=size))
                  for n in models.MODEL_NAMES]
        assert max(counts) / min(counts) < 10, (size, in_channels, counts)
    # (the smoke size is a pipeline check: its U-Net is ~150x smaller than the smallest SwinUNETR)


def test_registry_builds_each_family_with_its_class_and_describe_leaves_out_the_constructor():
    from monai.networks.nets import AttentionUnet, SwinUNETR, UNet

    expected = {"unet": UNet, "resunet": UNet, "attention_unet": AttentionUnet, "hybrid_transformer": SwinUNETR}
    for name, family in models.REGISTRY.items():
        net = models.build_model(name, in_channels=1, foreground_prior=None)
        assert type(net) is expected[name] and family.monai_class.endswith(expected[name].__name__)
        assert set(family.describe()) == {"name", "label", "monai_class", "description"}
    with pytest.raises(ValueError, match="model name must be one of"):
        models.check_model_name("vnet")
    with pytest.raises(ValueError, match="size must be one of"):
        models.check_size("huge")
