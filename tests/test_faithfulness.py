"""Faithfulness of importance maps: the maps (`vitnb.importance`), deletion and insertion curves, their areas, the
table and figure, and the chance-level test.

The central model, `one_patch_vit`, is a genuine `VisionTransformer` whose weights make its decision a
function of one known patch: its answers are known exactly, so the curves and orders can be checked.
"""

import itertools
import math

import matplotlib.pyplot as plt
import pytest
import torch
from helpers import MAPS_VIT, tiny_vit
from matplotlib.colors import to_hex

from vitnb import VisionTransformer, ViTConfig, maps
from vitnb import faithfulness as fa
from vitnb import importance as im
from vitnb import rollout as ro
from vitnb.errors import UsageError
from vitnb.plotting import METHOD_COLORS, plot_deletion_insertion

GRID = 3  # 3x3 patches of 2x2 pixels
KEY = 7  # the patch the one-patch model looks at: row 2, column 1 (not first, not central)
MAPS = ["raw attention", "rollout", "gradient rollout", "gradient x (input - canvas)", "integrated gradients"]
GRADIENT_MAPS = {
    "gradient x (input - canvas)": im.gradient_input_importance,
    "integrated gradients": im.integrated_gradients_importance,
}


def one_patch_vit() -> VisionTransformer:
    """A 1-block ViT (6x6 grayscale, 2x2 patches, cls pooling, 2 classes) whose logits depend on patch KEY only.

    Token channels: 0 and 3 carry a position marker (+M, -M on patch KEY; -M, +M on every other token: the
    pair sums to 0, so LayerNorm's mean does not mix the marker into the content), 1 the patch's mean pixel.
    The cls query is a constant (qkv bias) times the key's channel 0, so after softmax the cls token attends
    to patch KEY with weight 1 - O(e^-70): no other patch reaches it, in float32 exactly. The value carries
    channel 1, which the output projection writes into channel 2 of the cls token; the MLP adds nothing;
    the head reads channel 2: logit 1 = +60 * it, logit 0 = -60 * it. So the class is 'patch KEY is
    bright' (1) or 'dark' (0), a blank (0) patch KEY gives probability 1/2, and the evidence for the true
    class flows through the attention weight cls -> KEY, which gradient rollout can see.
    """
    cfg = ViTConfig(img_size=6, patch_size=2, in_chans=1, num_classes=2, embed_dim=8, depth=1, num_heads=1)
    model = VisionTransformer(cfg)
    big = 10.0
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        for norm in (model.blocks[0].norm1, model.blocks[0].norm2, model.norm):
            norm.weight.fill_(1.0)
        model.patch_embed.proj.weight[1] = 0.25  # channel 1 = mean pixel of the patch
        marker = torch.tensor([-big, big]).repeat(1 + GRID * GRID, 1)  # (N, 2): channels 0 and 3
        marker[1 + KEY] = torch.tensor([big, -big])
        model.pos_embed[0, :, [0, 3]] = marker
        qkv = model.blocks[0].attn.qkv
        qkv.bias[0] = 50.0  # q = (50, 0, ...) for every token
        qkv.weight[8 + 0, 0] = 1.0  # k channel 0 = LayerNorm(token) channel 0: the marker
        qkv.weight[16 + 1, 1] = 1.0  # v channel 1 = LayerNorm(token) channel 1: the content
        model.blocks[0].attn.proj.weight[2, 1] = 1.0
        model.head.weight[1, 2], model.head.weight[0, 2] = 60.0, -60.0
    return model.eval()


def one_patch_images(n: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised images (n, 1, 6, 6) of noise, patch KEY bright (+1.5, class 1) or dark (-1.5, class 0)."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(n, 1, 6, 6, generator=g)
    labels = torch.arange(n) % 2
    r, c = divmod(KEY, GRID)
    images[:, :, 2 * r : 2 * r + 2, 2 * c : 2 * c + 2] = (3.0 * labels - 1.5).reshape(n, 1, 1, 1)
    return images, labels


def maps_vit(**changes) -> VisionTransformer:
    """The attention-map tests' tiny ViT (`helpers.MAPS_VIT`: 8x8, 2x2 patches, 3 classes, lively), with `changes`."""
    return tiny_vit(**(MAPS_VIT | changes))


def probability(model, images, labels) -> torch.Tensor:
    """softmax(model(images))[label], the straightforward way."""
    with torch.no_grad():
        return model(images).softmax(dim=-1)[torch.arange(len(labels)), labels]


POOLS = [dict(), dict(class_token=False, global_pool="avg", pos_embed="sincos")]


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors gain nothing from intra-op threads, and on a busy CPU waiting for them costs seconds."""
    with maps.single_thread():
        yield


# --- 1. a decision that rests on one known patch --------------------------------------------------------
def test_one_patch_model_depends_on_that_patch_only():
    """The construction itself: any other patch can change without moving the probability."""
    model = one_patch_vit()
    images, labels = one_patch_images()
    scrambled = torch.randn_like(images) * 3
    r, c = divmod(KEY, GRID)
    scrambled[..., 2 * r : 2 * r + 2, 2 * c : 2 * c + 2] = images[..., 2 * r : 2 * r + 2, 2 * c : 2 * c + 2]
    torch.testing.assert_close(
        probability(model, scrambled, labels), probability(model, images, labels), atol=1e-6, rtol=0
    )
    assert (probability(model, images, labels) > 0.9).all()  # the true class wins clearly: a drop to 1/2 is visible


@pytest.mark.parametrize("method", MAPS)
def test_maps_rank_the_deciding_patch_first(method):
    model = one_patch_vit()
    images, labels = one_patch_images()
    scores = im.importance_map(method, model, images, labels, canvas=torch.zeros_like(images)).flatten(1)  # (B, 9)
    assert scores.shape == (6, GRID * GRID)
    assert scores.argmax(dim=1).tolist() == [KEY] * 6
    others = torch.cat([scores[:, :KEY], scores[:, KEY + 1 :]], dim=1)
    assert (scores[:, KEY] > 1e3 * others.abs().max(dim=1).values).all()  # first by far, not by a tie-break


def test_maps_see_only_evidence_for_the_class():
    """relu(A * dlogit/dA) keeps what raises the logit: for the class patch KEY argues against, KEY scores 0
    (all patches score ~0, so the order is arbitrary), while the signed gradient maps score KEY below every
    other patch: against the canvas, patch KEY lowers that class's logit."""
    model = one_patch_vit()
    images, labels = one_patch_images()
    against = im.gradient_rollout_importance(model, images, 1 - labels).flatten(1)
    assert against[:, KEY].eq(0).all() and against.abs().max() < 1e-20
    for method in GRADIENT_MAPS:
        scores = im.importance_map(method, model, images, 1 - labels, canvas=torch.zeros_like(images)).flatten(1)
        assert scores.argmin(dim=1).tolist() == [KEY] * 6 and (scores[:, KEY] < -1).all(), method


def one_patch_avg_vit() -> VisionTransformer:
    """`one_patch_vit` for average pooling (no cls token, the head reads LayerNorm(mean token)): every patch
    attends to patch KEY, whose content the value carries into channel 2 of every token; the head reads it.

    Every content the LayerNorms see comes in +/- pairs (channels 0/3 the marker, 1/4 the patch's mean pixel,
    2/5 the evidence), so no LayerNorm mean mixes them; the other patches reach the logit only through the
    final LayerNorm's scale, which the marker dominates (a change of ~1e-5 in probability), and the sign of
    the evidence is patch KEY's alone. A blank patch KEY gives probability 1/2 exactly.
    """
    cfg = ViTConfig(
        img_size=6, patch_size=2, in_chans=1, num_classes=2, embed_dim=8, depth=1, num_heads=1,
        class_token=False, global_pool="avg", pos_embed="learn",
    )  # fmt: skip
    model = VisionTransformer(cfg)
    big = 10.0
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        for norm in (model.blocks[0].norm1, model.blocks[0].norm2, model.fc_norm):
            norm.weight.fill_(1.0)
        model.patch_embed.proj.weight[1], model.patch_embed.proj.weight[4] = 0.25, -0.25  # +-mean pixel
        marker = torch.tensor([-big, big]).repeat(GRID * GRID, 1)  # (N, 2): channels 0 and 3
        marker[KEY] = torch.tensor([big, -big])
        model.pos_embed[0, :, [0, 3]] = marker
        qkv = model.blocks[0].attn.qkv
        qkv.bias[0] = 50.0  # every query: (50, 0, ...)
        qkv.weight[8 + 0, 0] = 1.0  # keys: the marker, so every patch attends to patch KEY
        qkv.weight[16 + 1, 1] = 1.0  # values: the content
        model.blocks[0].attn.proj.weight[2, 1], model.blocks[0].attn.proj.weight[5, 1] = 1.0, -1.0
        model.head.weight[1, 2], model.head.weight[0, 2] = 60.0, -60.0
    return model.eval()


def test_average_pooled_one_patch_model_is_explained_by_that_patch():
    """The series' ViT averages its patch tokens; on such a model too the maps rank the deciding patch first
    (for every image, not by a tie-break) and deleting in gradient rollout's order drops at step 1 to 1/2."""
    model = one_patch_avg_vit()
    images, labels = one_patch_images()
    scrambled = torch.randn_like(images) * 3
    r, c = divmod(KEY, GRID)
    scrambled[..., 2 * r : 2 * r + 2, 2 * c : 2 * c + 2] = images[..., 2 * r : 2 * r + 2, 2 * c : 2 * c + 2]
    clean = probability(model, images, labels)
    assert (clean > 0.99).all()
    torch.testing.assert_close(probability(model, scrambled, labels), clean, atol=1e-4, rtol=0)
    for method in MAPS:
        scores = im.importance_map(method, model, images, labels, canvas=torch.zeros_like(images)).flatten(1)  # (B, 9)
        others = torch.cat([scores[:, :KEY], scores[:, KEY + 1 :]], dim=1)
        assert scores.argmax(dim=1).tolist() == [KEY] * 6, method
        assert (scores[:, KEY] > 2 * others.abs().max(dim=1).values).all(), method
    scores = im.gradient_rollout_importance(model, images, labels)
    curves, _ = fa.perturbation_curve(model, images, labels, scores, "deletion", k=1)
    torch.testing.assert_close(curves[:, 0], clean)
    torch.testing.assert_close(curves[:, 1:], torch.full((6, 9), 0.5), atol=1e-6, rtol=0)


def test_deletion_drops_at_step_one_to_the_blank_probability():
    model = one_patch_vit()
    images, labels = one_patch_images()
    scores = im.gradient_rollout_importance(model, images, labels)
    curves, x = fa.perturbation_curve(model, images, labels, scores, "deletion", k=1, baseline="blank", blank=0.0)
    assert curves.shape == (6, 10)
    torch.testing.assert_close(x, torch.arange(10, dtype=torch.float64) / 9)
    torch.testing.assert_close(curves[:, 0], probability(model, images, labels))  # not before step 1
    assert (curves[:, 0] > 0.9).all()
    torch.testing.assert_close(curves[:, 1:], torch.full((6, 9), 0.5), atol=1e-6, rtol=0)  # blank patch KEY: 1/2
    # insertion by the same map: the whole probability comes back with the first patch revealed
    inserted, _ = fa.perturbation_curve(model, images, labels, scores, "insertion", k=1)
    torch.testing.assert_close(inserted[:, 0], torch.full((6,), 0.5), atol=1e-6, rtol=0)
    torch.testing.assert_close(inserted[:, 1:], curves[:, :1].expand(6, 9), atol=1e-6, rtol=0)


def test_worst_order_keeps_the_probability_until_the_last_step():
    model = one_patch_vit()
    images, labels = one_patch_images()
    curves, _ = fa.perturbation_curve(
        model, images, labels, -im.gradient_input_importance(model, images, labels, canvas=0 * images), "deletion", k=2
    )
    assert curves.shape == (6, 6)  # 0, 2, 4, 6, 8, 9 patches deleted
    torch.testing.assert_close(curves[:, :5], probability(model, images, labels)[:, None].expand(6, 5))
    torch.testing.assert_close(curves[:, 5], torch.full((6,), 0.5), atol=1e-6, rtol=0)


# --- 2. a random order scores what chance predicts ------------------------------------------------------
def test_random_order_area_matches_chance_on_the_one_patch_model():
    """Patch KEY is deleted at step r, uniform in 1..N, so the deletion curve is p_clean before r and p_blank
    from r on. Its area is (1/N) [(r - 1) p_clean + (p_clean + p_blank) / 2 + (N - r) p_blank]: its mean over r
    is (p_clean + p_blank) / 2 and its spread |p_clean - p_blank| / N * sqrt((N^2 - 1) / 12)."""
    model = one_patch_vit()
    image, label = one_patch_images(1)
    n = 400
    images, labels = image.expand(n, -1, -1, -1), label.expand(n)
    scores = im.random_importance(model, images, labels, generator=torch.Generator().manual_seed(1))
    curves, x = fa.perturbation_curve(model, images, labels, scores, "deletion")
    [row] = fa.faithfulness_summary({"random": {"deletion": curves, "insertion": curves}}, x)
    p_clean, p_blank, big_n = probability(model, image, label).item(), 0.5, GRID * GRID
    assert row["n"] == n
    assert abs(row["deletion_auc_mean"] - (p_clean + p_blank) / 2) < 2 * row["deletion_auc_sem"]
    expected_std = abs(p_clean - p_blank) / big_n * math.sqrt((big_n**2 - 1) / 12)
    assert row["deletion_auc_std"] == pytest.approx(expected_std, rel=0.1)
    assert row["deletion_auc_sem"] == pytest.approx(row["deletion_auc_std"] / math.sqrt(n))


@pytest.mark.parametrize("curve", ["deletion", "insertion"])
def test_random_order_area_matches_the_mean_over_all_orders(curve):
    """On a 2x2 grid, the mean area over all 24 orders, each computed exactly, is what chance gives."""
    model = maps_vit(size=4)
    image, label = torch.randn(1, 1, 4, 4), torch.tensor([1])
    orders = torch.tensor(list(itertools.permutations(range(4))))  # (24, 4): patch ids, first first
    every_order = torch.empty(24, 4).scatter_(1, orders, torch.tensor([4.0, 3, 2, 1]).expand(24, 4))
    exact, x = fa.perturbation_curve(model, image.expand(24, -1, -1, -1), label.expand(24), every_order, curve)
    chance = fa.area_under_curve(exact, x).mean().item()
    n = 600
    scores = im.random_importance(
        model, image.expand(n, -1, -1, -1), label.expand(n), generator=torch.Generator().manual_seed(0)
    )
    curves, x = fa.perturbation_curve(model, image.expand(n, -1, -1, -1), label.expand(n), scores, curve)
    areas = fa.area_under_curve(curves, x)  # (n,)
    sem = areas.std().item() / math.sqrt(n)
    assert abs(areas.mean().item() - chance) < 2 * sem
    # the test has power: a biased order (e.g. always the best or the worst) would miss by many sems
    best_and_worst = fa.area_under_curve(exact, x).aminmax()
    assert min(abs(chance - best_and_worst.min.item()), abs(chance - best_and_worst.max.item())) > 10 * sem


def test_random_order_is_seeded():
    model, images = maps_vit(), torch.randn(3, 1, 8, 8)
    first = im.importance_map("random", model, images, None, generator=torch.Generator().manual_seed(5))
    again = im.importance_map("random", model, images, None, generator=torch.Generator().manual_seed(5))
    assert first.shape == (3, 4, 4) and first.equal(again)
    assert not first.equal(im.importance_map("random", model, images, None, generator=torch.Generator().manual_seed(6)))


# --- 3. the ends of the curves --------------------------------------------------------------------------
@pytest.mark.parametrize("pool", POOLS)
@pytest.mark.parametrize("baseline", ["blank", "blur"])
@pytest.mark.parametrize("k", [1, 3])
def test_curve_ends_are_the_clean_image_and_the_canvas(pool, baseline, k):
    model = maps_vit(in_chans=3, **pool)
    images, labels = torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 1])
    blank = [-0.5, 0.2, 1.0]  # normalised black of a three-channel data set
    canvas = fa.baseline_canvas(images, baseline, blank=blank, sigma=2)
    torch.testing.assert_close(fa.curve_canvas(model, images, baseline, blank=blank), canvas)
    scores = im.gradient_input_importance(model, images, labels, canvas=canvas)
    deleted, x = fa.perturbation_curve(model, images, labels, scores, "deletion", k=k, baseline=baseline, blank=blank)
    inserted, _ = fa.perturbation_curve(model, images, labels, scores, "insertion", k=k, baseline=baseline, blank=blank)
    assert deleted.shape == inserted.shape == (4, math.ceil(16 / k) + 1) and x[-1] == 1.0
    clean, bare = probability(model, images, labels), probability(model, canvas, labels)
    assert (clean - bare).abs().max() > 1e-3  # the canvas changes the answer: the ends are distinguishable
    for got, want in [(deleted[:, 0], clean), (deleted[:, -1], bare), (inserted[:, 0], bare), (inserted[:, -1], clean)]:
        torch.testing.assert_close(got, want, atol=1e-6, rtol=0)


@pytest.mark.parametrize("pool", POOLS)
@pytest.mark.parametrize("baseline", ["blank", "blur"])
def test_shared_ends_give_the_same_curves(pool, baseline):
    """`end_probabilities` once per batch, passed as `ends`, replaces the first and last steps, nothing else."""
    model = maps_vit(**pool)
    images, labels = torch.randn(3, 1, 8, 8), torch.tensor([2, 0, 1])
    ends = fa.end_probabilities(model, images, labels, baseline=baseline, blank=-0.4)
    canvas = fa.baseline_canvas(images, baseline, blank=-0.4, sigma=2)
    torch.testing.assert_close(ends[0], probability(model, images, labels))
    torch.testing.assert_close(ends[1], probability(model, canvas, labels))
    scores = im.gradient_input_importance(model, images, labels, canvas=canvas)
    for curve in ("deletion", "insertion"):
        for k in (1, 5, 16):
            options = dict(k=k, baseline=baseline, blank=-0.4)
            computed, x = fa.perturbation_curve(model, images, labels, scores, curve, **options)
            shared, x_shared = fa.perturbation_curve(model, images, labels, scores, curve, ends=ends, **options)
            torch.testing.assert_close(shared, computed, atol=1e-6, rtol=0)
            assert x_shared.equal(x)
    swapped = (ends[1], ends[0])  # the ends really are read from `ends`
    deleted, _ = fa.perturbation_curve(model, images, labels, scores, "deletion", ends=swapped, baseline=baseline)
    assert deleted[:, 0].equal(ends[1]) and deleted[:, -1].equal(ends[0])


def test_baseline_canvases():
    images = torch.randn(2, 3, 8, 8)
    blank = fa.baseline_canvas(images, "blank", blank=[-1.0, 0.0, 2.0])
    assert blank.shape == images.shape and blank[:, 0].eq(-1).all() and blank[:, 2].eq(2).all()
    blurred = fa.baseline_canvas(images, "blur", sigma=2)
    assert blurred.shape == images.shape
    torch.testing.assert_close(blurred.mean(dim=(-2, -1)), images.mean(dim=(-2, -1)), atol=0.15, rtol=0)
    assert blurred.std() < 0.5 * images.std()  # the patch-scale detail is gone
    constant = torch.full((1, 1, 8, 8), 0.7)
    torch.testing.assert_close(fa.baseline_canvas(constant, "blur", sigma=4), constant)  # the kernel is cut to fit
    with pytest.raises(UsageError, match="baseline must be 'blank' or 'blur'"):
        fa.baseline_canvas(images, "noise")
    with pytest.raises(UsageError, match="one value or one per channel"):
        fa.baseline_canvas(images, "blank", blank=[0.0, 1.0])


def test_a_canvas_tensor_is_used_as_given():
    model, images, labels = maps_vit(), torch.randn(2, 1, 8, 8), torch.tensor([0, 2])
    canvas = torch.randn(1, 8, 8)
    curves, _ = fa.perturbation_curve(model, images, labels, torch.rand(2, 4, 4), "deletion", k=16, baseline=canvas)
    torch.testing.assert_close(curves[:, 1], probability(model, canvas.expand(2, 1, 8, 8), labels), atol=1e-6, rtol=0)


# --- 4. batched == one image at a time ------------------------------------------------------------------
@pytest.mark.parametrize("pool", POOLS)
def test_batched_equals_per_image(pool):
    model = maps_vit(**pool)
    images, labels = torch.randn(3, 1, 8, 8), torch.tensor([2, 0, 1])
    canvas = fa.curve_canvas(model, images, "blur")
    for method in MAPS:
        batched = im.importance_map(method, model, images, labels, canvas=canvas)
        single = torch.cat(
            [
                im.importance_map(method, model, images[i : i + 1], labels[i : i + 1], canvas=canvas[i : i + 1])
                for i in range(3)
            ]
        )
        torch.testing.assert_close(batched, single, atol=1e-6, rtol=1e-5)
        for curve in ("deletion", "insertion"):
            each = [(images[i : i + 1], labels[i : i + 1], batched[i : i + 1]) for i in range(3)]
            alone = torch.cat([fa.perturbation_curve(model, *one, curve, k=2, baseline="blur")[0] for one in each])
            for chunk_size in (2048, 5, 1):  # all 9 steps of 3 images in one run; one step per run; one image
                together, _ = fa.perturbation_curve(
                    model, images, labels, batched, curve, k=2, baseline="blur", chunk_size=chunk_size
                )
                torch.testing.assert_close(together, alone, atol=1e-6, rtol=0)


# --- the maps: definitions for both poolings ------------------------------------------------------------
def test_cls_model_maps_are_the_rollout_modules_maps():
    model, images, labels = maps_vit(), torch.randn(3, 1, 8, 8), torch.tensor([0, 1, 2])
    with torch.no_grad():
        _, attentions = model(images, return_attention=True)
    layout = ro.TokenLayout.of(model)
    torch.testing.assert_close(
        im.raw_attention_importance(model, images, labels), ro.raw_attention(attentions, -1, "mean", layout, query=0)
    )
    torch.testing.assert_close(im.rollout_importance(model, images, labels), ro.attention_rollout(attentions, layout))
    torch.testing.assert_close(
        im.gradient_rollout_importance(model, images, labels), ro.gradient_rollout(model, images, labels)
    )


def test_avg_pooled_maps_are_what_the_patches_receive():
    """Without a cls token the head reads the mean patch token, so the maps read the mean of the patch rows."""
    model, images, labels = maps_vit(**POOLS[1]), torch.randn(3, 1, 8, 8), torch.tensor([0, 1, 2])
    with torch.no_grad():
        _, attentions = model(images, return_attention=True)
    last = attentions[-1].mean(dim=1)  # (B, 16, 16), heads averaged
    torch.testing.assert_close(im.raw_attention_importance(model, images, labels), last.mean(dim=1).reshape(3, 4, 4))
    rollout = ro.rollout_matrix(attentions, ro.TokenLayout.of(model))
    torch.testing.assert_close(im.rollout_importance(model, images, labels), rollout.mean(dim=1).reshape(3, 4, 4))
    gradient = ro.gradient_rollout_matrix(model, images, labels)
    torch.testing.assert_close(
        im.gradient_rollout_importance(model, images, labels), gradient.mean(dim=1).reshape(3, 4, 4)
    )
    assert gradient.sum(dim=-1).allclose(torch.ones(3, 16))


def per_patch(pixels: torch.Tensor) -> torch.Tensor:
    """(B, C, 8, 8) -> (B, 4, 4): sums over channels and 2x2 patches, written out."""
    pixels = pixels.sum(dim=1)
    return torch.tensor([[[pixels[b, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2].sum() for j in range(4)]
                          for i in range(4)] for b in range(len(pixels))])  # fmt: skip


def test_gradient_input_is_gradient_times_difference_to_the_canvas():
    model, images, labels = maps_vit(in_chans=2), torch.randn(2, 2, 8, 8), torch.tensor([1, 0])
    canvas = torch.randn(2, 2, 8, 8)
    x = images.clone().requires_grad_()
    model(x)[torch.arange(2), labels].sum().backward()
    expected = per_patch((images - canvas) * x.grad)  # signed
    model.zero_grad()
    torch.testing.assert_close(im.gradient_input_importance(model, images, labels, canvas=canvas), expected)
    torch.testing.assert_close(
        im.importance_map("gradient x (input - canvas)", model, images, labels, canvas=canvas), expected
    )
    assert all(p.grad is None or not p.grad.any() for p in model.parameters())
    assert not images.requires_grad


@pytest.mark.parametrize("method", list(GRADIENT_MAPS))
@pytest.mark.parametrize("pool", POOLS)
def test_a_patch_equal_to_the_canvas_scores_zero(method, pool):
    """The reference is the canvas: where the image already shows it, deleting changes nothing, and the map
    says so, even though the model's gradient there is not 0."""
    model, images, labels = maps_vit(**pool), torch.randn(3, 1, 8, 8), torch.tensor([0, 1, 2])
    canvas = torch.full_like(images, -0.8)  # e.g. Fashion-MNIST's normalised black
    images[:, :, :2, 2:4] = -0.8  # patch (0, 1) shows the canvas
    scores = GRADIENT_MAPS[method](model, images, labels, canvas=canvas)  # (3, 4, 4)
    assert scores[:, 0, 1].eq(0).all()
    assert (scores.flatten(1).abs().amax(dim=1) > 1e-4).all()  # the other patches do score
    # the same patch against a zero reference (the normalised input itself) would score
    against_zero = GRADIENT_MAPS[method](model, images, labels, canvas=torch.zeros_like(images))
    assert (against_zero[:, 0, 1].abs() > 1e-6).all()


@pytest.mark.parametrize("pool", POOLS)
def test_integrated_gradients_add_up_to_the_logit_change(pool):
    """Completeness (Sundararajan et al. 2017): the patches' scores sum to logit(x) - logit(canvas)."""
    model = maps_vit(in_chans=3, **pool)
    images, labels = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 1, 2, 1])
    canvas = fa.curve_canvas(model, images, "blank", blank=[-0.8, -0.5, 0.3])
    scores = im.integrated_gradients_importance(model, images, labels, canvas=canvas, steps=64)
    with torch.no_grad():
        rows = torch.arange(4)
        change = model(images)[rows, labels] - model(canvas)[rows, labels]  # (4,)
    assert change.abs().min() > 0.05  # a change to account for
    torch.testing.assert_close(scores.sum(dim=(1, 2)), change, atol=2e-3, rtol=1e-2)
    # the one-step gradient map is not complete in general: integrated gradients adds something
    first_order = im.gradient_input_importance(model, images, labels, canvas=canvas).sum(dim=(1, 2))
    assert (first_order - change).abs().max() > 10 * (scores.sum(dim=(1, 2)) - change).abs().max()


def test_gradient_maps_need_the_canvas():
    model, images, labels = maps_vit(), torch.randn(2, 1, 8, 8), torch.tensor([0, 1])
    for method in GRADIENT_MAPS:
        with pytest.raises(UsageError, match="pass canvas="):
            im.importance_map(method, model, images, labels)


# --- areas, the table, the figure -----------------------------------------------------------------------
def test_fractions_and_areas():
    torch.testing.assert_close(fa.fractions(9, 2), torch.tensor([0, 2, 4, 6, 8, 9], dtype=torch.float64) / 9)
    x = fa.fractions(4, 1)
    curves = torch.stack([torch.ones(5), x.float(), torch.tensor([1.0, 0, 0, 0, 0])])
    torch.testing.assert_close(fa.area_under_curve(curves, x), torch.tensor([1.0, 0.5, 0.125], dtype=torch.float64))
    for bad in (0, 1.5, True):
        with pytest.raises(UsageError, match="k .* must be a positive int"):
            fa.fractions(9, bad)


def test_summary_statistics():
    x = torch.tensor([0.0, 1.0], dtype=torch.float64)
    deletion = torch.tensor([[0.2, 0.2], [0.4, 0.4], [0.9, 0.9]])  # areas 0.2, 0.4, 0.9
    [row] = fa.faithfulness_summary({"m": {"deletion": deletion, "insertion": 1 - deletion}}, x)
    std = math.sqrt(((0.2 - 0.5) ** 2 + (0.4 - 0.5) ** 2 + (0.9 - 0.5) ** 2) / 2)
    assert row == pytest.approx(
        {"method": "m", "deletion_auc_mean": 0.5, "deletion_auc_sem": std / math.sqrt(3), "deletion_auc_std": std,
         "insertion_auc_mean": 0.5, "insertion_auc_sem": std / math.sqrt(3), "insertion_auc_std": std, "n": 3}
    )  # fmt: skip


def test_table_over_a_data_set(toy):
    model = maps_vit(classes=4)
    data = toy(n=10, size=8, classes=4)
    curves, x = fa.faithfulness_curves(model, data, n_images=7, batch_size=3, k=4, progress=False)
    assert list(curves) == list(im.METHODS) and x.tolist() == [0, 0.25, 0.5, 0.75, 1]
    assert curves["integrated gradients"]["deletion"].shape == (7, 5)
    # the blank canvas is the data set's black image, as the model sees it
    black = data.normalize(torch.zeros(1, 1, 8, 8, dtype=torch.uint8))
    bare = probability(model, black.expand(7, -1, -1, -1), data.labels[:7])
    torch.testing.assert_close(curves["rollout"]["insertion"][:, 0], bare, atol=1e-6, rtol=0)
    # batches see the same maps as one big batch, except the random order
    whole, _ = fa.faithfulness_curves(model, data, MAPS, n_images=7, batch_size=7, k=4, progress=False)
    for method in MAPS:
        torch.testing.assert_close(whole[method]["deletion"], curves[method]["deletion"], atol=1e-6, rtol=0)
    rows = fa.faithfulness_table(model, data, n_images=7, batch_size=3, k=4, progress=False)
    assert rows == fa.faithfulness_summary(curves, x)
    assert [r["method"] for r in rows] == list(im.METHODS) and {r["n"] for r in rows} == {7}


@pytest.mark.parametrize("baseline", ["blank", "blur"])
def test_the_table_measures_gradient_maps_against_its_own_canvas(toy, baseline):
    """The curves and the gradient maps share one reference: the data set's black image, or the blurred image."""
    model, data = maps_vit(classes=4), toy(n=6, size=8, classes=4)
    methods = list(GRADIENT_MAPS)
    curves, _ = fa.faithfulness_curves(model, data, methods, n_images=6, k=2, baseline=baseline, progress=False)
    images, labels = data.normalize(data.images[:6]), data.labels[:6]
    black = data.normalize(torch.zeros(1, 1, 1, 1, dtype=data.images.dtype)).flatten().tolist()
    canvas = fa.curve_canvas(model, images, baseline, blank=black)
    other = fa.curve_canvas(model, images, "blur" if baseline == "blank" else "blank", blank=black)
    for method, attribute in GRADIENT_MAPS.items():
        for curve in ("deletion", "insertion"):
            own, _ = fa.perturbation_curve(
                model, images, labels, attribute(model, images, labels, canvas=canvas), curve, k=2, baseline=canvas
            )
            torch.testing.assert_close(curves[method][curve], own, atol=1e-6, rtol=0)
        # the test has power: the map against the other canvas orders the patches differently
        assert (
            not attribute(model, images, labels, canvas=other)
            .flatten(1)
            .argsort(dim=1)
            .equal(attribute(model, images, labels, canvas=canvas).flatten(1).argsort(dim=1))
        )


def test_table_takes_tensors():
    model, images, labels = maps_vit(), torch.randn(5, 1, 8, 8), torch.tensor([0, 1, 2, 0, 1])
    method = "gradient x (input - canvas)"
    rows = fa.faithfulness_table(model, (images, labels), [method], n_images=None, k=8, progress=False)
    scores = im.gradient_input_importance(model, images, labels, canvas=torch.zeros_like(images))  # blank = 0
    deleted, x = fa.perturbation_curve(model, images, labels, scores, "deletion", k=8)
    assert rows[0]["n"] == 5
    assert rows[0]["deletion_auc_mean"] == pytest.approx(fa.area_under_curve(deleted, x).mean().item(), abs=1e-7)


@pytest.mark.parametrize(
    "bad, message",
    [
        (dict(methods=["attention"]), "methods must be a non-empty selection of"),
        (dict(methods=[]), "methods must be a non-empty selection of"),
        (dict(n_images=11), r"n_images=11 but the data set has 10 images"),
        (dict(k=0), "k .* must be a positive int"),
        (dict(baseline="white"), "baseline must be 'blank' or 'blur'"),
    ],
)
def test_bad_arguments_are_rejected(toy, bad, message):
    with pytest.raises(UsageError, match=message):
        fa.faithfulness_table(maps_vit(classes=4), toy(n=10, size=8), **({"n_images": 4} | bad), progress=False)


def test_maps_on_another_grid_are_rejected():
    model, images, labels = maps_vit(), torch.randn(2, 1, 8, 8), torch.tensor([0, 1])
    with pytest.raises(UsageError, match="importance maps have 9 entries per image, the model 4x4 patches"):
        fa.perturbation_curve(model, images, labels, torch.rand(2, 3, 3), "deletion")
    with pytest.raises(UsageError, match="curve must be 'deletion' or 'insertion', got 'removal'"):
        fa.perturbation_curve(model, images, labels, torch.rand(2, 4, 4), "removal")
    with pytest.raises(UsageError, match="unknown importance method 'gradcam'"):
        im.importance_map("gradcam", model, images, labels)


def test_plot_deletion_insertion():
    x = fa.fractions(4, 1)
    curves = {
        "rollout": {"deletion": torch.rand(6, 5), "insertion": torch.rand(6, 5)},
        "mine": {"deletion": torch.rand(6, 5), "insertion": torch.rand(6, 5)},
    }
    fig = plot_deletion_insertion(curves, x, title="faithfulness")
    deletion, insertion = fig.axes
    colours = [to_hex(line.get_color()) for line in deletion.lines]
    assert colours == [to_hex(METHOD_COLORS["rollout"]), "#8c564b"]  # brown: the first colour no method owns
    assert [to_hex(line.get_color()) for line in insertion.lines] == colours
    torch.testing.assert_close(
        torch.tensor(insertion.lines[0].get_ydata()), curves["rollout"]["insertion"].double().mean(dim=0)
    )
    assert len(deletion.collections) == 2  # one sem band per method
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["rollout", "mine"]
    plt.close(fig)


def test_compare_methods_ranks_and_pairs():
    x = torch.tensor([0.0, 1.0], dtype=torch.float64)  # flat curves: area = value

    def flat(values):
        v = torch.tensor(values, dtype=torch.float64)[:, None]
        return {"deletion": v.expand(-1, 2), "insertion": (1 - v).expand(-1, 2)}

    curves = {"random": flat([0.6, 0.5, 0.7]), "good": flat([0.2, 0.1, 0.3]), "fair": flat([0.45, 0.2, 0.4])}
    deletion = fa.compare_methods(curves, x, "deletion")
    assert [r["method"] for r in deletion] == ["good", "fair", "random"]
    assert deletion[0]["area"] == pytest.approx(0.2) and deletion[0]["behind"] == 0 and deletion[0]["gap_closed"] == 1
    assert math.isnan(deletion[0]["behind_sem"])
    behind = torch.tensor([0.25, 0.1, 0.1], dtype=torch.float64)  # fair - good, image by image
    assert deletion[1]["behind"] == pytest.approx(0.15)
    assert deletion[1]["behind_sem"] == pytest.approx(behind.std().item() / math.sqrt(3))
    assert deletion[1]["gap_closed"] == pytest.approx(1 - 0.15 / 0.4)  # random is 0.4 behind good
    assert deletion[2]["gap_closed"] == pytest.approx(0.0)
    insertion = fa.compare_methods(curves, x, "insertion")  # 1 - value: the same order, highest area first
    assert [r["method"] for r in insertion] == ["good", "fair", "random"]
    assert insertion[1]["behind"] == pytest.approx(0.15) and insertion[1]["area"] == pytest.approx(1 - 1.05 / 3)
    assert fa.compare_methods(curves, x, "deletion", reference=None)[1]["gap_closed"] is None
    with pytest.raises(UsageError, match="reference 'saliency' is not among"):
        fa.compare_methods(curves, x, "deletion", reference="saliency")


def test_foreground_share_counts_the_top_patches_that_hold_ink():
    images = torch.zeros(2, 1, 8, 8)
    images[:, :, :4, :4] = 1.0  # ink in patch (0, 0) of a 2x2 grid of 4-pixel patches, background elsewhere
    on_ink = torch.tensor([[1.0, 0.5], [0.2, 0.1]]).expand(2, 2, 2)
    on_background = torch.tensor([[0.0, 0.5], [0.2, 0.9]]).expand(2, 2, 2)
    assert fa.foreground_share(on_ink, images, k=1).tolist() == [1.0, 1.0]
    assert fa.foreground_share(on_background, images, k=1).tolist() == [0.0, 0.0]
    assert fa.foreground_share(on_background, images, k=4).tolist() == [0.25, 0.25]
    with pytest.raises(UsageError, match="do not tile"):
        fa.foreground_share(on_ink, torch.zeros(2, 1, 7, 7), k=1)


def test_foreground_patches_mark_the_patches_with_a_bright_pixel():
    images = torch.zeros(1, 1, 8, 8)
    images[0, 0, 0, 0] = 0.5  # one bright pixel in patch (0, 0)
    images[0, 0, 7, 7] = 0.05  # below the threshold: patch (1, 1) stays background
    assert fa.foreground_patches(images, (2, 2)).tolist() == [[True, False, False, False]]
    assert fa.foreground_patches(images, (2, 2), threshold=0.01).tolist() == [[True, False, False, True]]
    with pytest.raises(UsageError, match="does not tile"):
        fa.foreground_patches(images, (3, 3))


# --- chance level ---------------------------------------------------------------------------------------------
def test_more_than_chance_tells_a_clear_excess_from_noise():
    chance = torch.full((40,), 0.5)  # e.g. background's share of each image
    g = torch.Generator().manual_seed(0)
    noise = 0.05 * torch.randn(40, generator=g)
    assert fa.more_than_chance(chance + 0.2 + noise, chance) == 1  # 0.2 above, standard error below 0.01
    assert fa.more_than_chance(chance - 0.2 + noise, chance) == -1
    level = torch.tensor([0.4, 0.6] * 20)  # mean difference exactly 0: level with chance
    assert fa.more_than_chance(level, chance) == 0
    spread = torch.tensor([0.1, 0.9, 0.3, 1.0])  # mean 0.575 over 4 images with a wide spread: not clear
    assert fa.more_than_chance(spread, torch.full((4,), 0.5)) == 0
    assert fa.more_than_chance(spread, torch.full((4,), 0.5), z=0.1) == 1  # a looser test calls it
    with pytest.raises(UsageError, match="paired per image"):
        fa.more_than_chance(torch.rand(5), torch.rand(4))


def test_paired_difference_is_the_mean_and_standard_error_of_the_per_image_differences():
    a = torch.tensor([0.3, 0.5, 0.4, 0.6])
    b = torch.tensor([0.1, 0.4, 0.4, 0.3])
    d = torch.tensor([0.2, 0.1, 0.0, 0.3], dtype=torch.float64)
    paired = fa.paired_difference(a, b)
    assert paired.n == 4
    assert paired.mean == pytest.approx(0.15)
    assert paired.sem == pytest.approx(d.std().item() / 2)
    assert paired.z == pytest.approx(0.15 / paired.sem)
    assert str(paired) == f"+0.150 ± {paired.sem:.3f}"
    # what the two share cancels: a large common spread between images leaves the paired error unchanged
    common = torch.tensor([0.0, 10.0, -5.0, 3.0])
    assert fa.paired_difference(a + common, b + common).sem == pytest.approx(paired.sem)
    assert paired.direction() == 1 and paired.direction(z=10) == 0
    assert fa.paired_difference(b, a).direction() == -1
    assert fa.PairedDifference(0.0, 0.0, 3).z == 0 and fa.PairedDifference(-0.1, 0.0, 3).z == -math.inf
    with pytest.raises(UsageError, match="paired per image"):
        fa.paired_difference(torch.rand(5), torch.rand(4))
    with pytest.raises(UsageError, match="n >= 2"):
        fa.paired_difference(torch.rand(1), torch.rand(1))


def test_versus_reference_is_positive_for_a_more_faithful_map_on_both_curves():
    x = torch.tensor([0.0, 1.0], dtype=torch.float64)  # flat curves: area = value

    def flat(deletion, insertion):
        return {"deletion": torch.tensor(deletion)[:, None].expand(-1, 2),
                "insertion": torch.tensor(insertion)[:, None].expand(-1, 2)}  # fmt: skip

    curves = {"random": flat([0.6, 0.5, 0.7], [0.3, 0.3, 0.4]), "good": flat([0.2, 0.1, 0.4], [0.6, 0.5, 0.6])}
    deletion = fa.versus_reference(curves, x, "deletion")
    insertion = fa.versus_reference(curves, x, "insertion")
    assert list(deletion) == ["good"] and list(insertion) == ["good"]
    assert deletion["good"].mean == pytest.approx(1.1 / 3)  # the random order's area minus the map's
    assert insertion["good"].mean == pytest.approx(0.7 / 3)  # the map's area minus the random order's
    assert deletion["good"] == fa.paired_difference(torch.tensor([0.6, 0.5, 0.7]), torch.tensor([0.2, 0.1, 0.4]))
    with pytest.raises(UsageError, match="reference 'saliency' is not among"):
        fa.versus_reference(curves, x, "deletion", reference="saliency")
