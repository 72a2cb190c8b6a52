"""Masked-autoencoder pretraining: masking, the loss on hidden patches, reconstructions, training through fit
(clipping, exact resume), weight transfer."""

import pytest
import torch

from vitnb.checkpoint import load_checkpoint
from vitnb.config import TrainConfig, preset
from vitnb.errors import UsageError
from vitnb.mae import MAEConfig, MaskedAutoencoder, random_masking
from vitnb.model import VisionTransformer
from vitnb.pretrain import MaskedReconstruction, pretrain_mae
from vitnb.train import fit

# 8x8 images, patch 2: a 4x4 grid of 16 patches, of which 4 stay visible at mask_ratio 0.75.
TINY = preset("cpu", img_size=8, patch_size=2, embed_dim=32, depth=2, num_heads=2, num_classes=4)
TINY_AVG = TINY.replace(class_token=False, global_pool="avg", pos_embed="sincos")


def tiny_mae(cfg=TINY, **kwargs) -> MaskedAutoencoder:
    return MaskedAutoencoder(MAEConfig(cfg, decoder_dim=16, decoder_depth=1, decoder_heads=2, **kwargs))


def images(n: int = 6) -> torch.Tensor:
    return torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(1))


def test_masking_keeps_the_same_number_per_sample_and_differs_between_samples():
    ids_keep, ids_restore, mask = random_masking(49, 12, 8, torch.Generator().manual_seed(0))
    assert ids_keep.shape == (8, 12) and mask.shape == (8, 49)
    assert mask.sum(dim=1).tolist() == [37.0] * 8  # round(49 * 0.25) = 12 kept, 37 hidden
    assert len({tuple(row.tolist()) for row in mask}) == 8  # every sample its own mask
    for keep, row in zip(ids_keep, mask, strict=True):  # the kept ids are exactly the unmasked positions
        assert sorted(keep.tolist()) == torch.nonzero(row == 0).flatten().tolist()
    ids_shuffle = ids_restore.argsort(dim=1)
    assert torch.equal(ids_shuffle.gather(1, ids_restore), torch.arange(49).expand(8, -1))


def test_forward_shapes_and_the_encoder_sees_only_visible_tokens():
    for cfg, prefix in ((TINY, 1), (TINY_AVG, 0)):
        mae = tiny_mae(cfg)
        latent, mask, _ = mae.forward_encoder(images())
        assert latent.shape == (6, prefix + 4, 32)
        loss, pred, mask = mae(images())
        assert pred.shape == (6, 16, 4) and mask.shape == (6, 16) and loss.ndim == 0
        assert mask.sum(dim=1).tolist() == [12.0] * 6


def test_a_seeded_generator_reproduces_the_masks_and_the_loss():
    mae = tiny_mae()
    loss1, pred1, mask1 = mae(images(), generator=torch.Generator().manual_seed(3))
    loss2, pred2, mask2 = mae(images(), generator=torch.Generator().manual_seed(3))
    _, _, mask3 = mae(images(), generator=torch.Generator().manual_seed(4))
    assert torch.equal(mask1, mask2) and torch.equal(pred1, pred2) and loss1.item() == loss2.item()
    assert not torch.equal(mask1, mask3)


@pytest.mark.parametrize("norm_pix_loss", [True, False])
def test_the_loss_counts_hidden_patches_only(norm_pix_loss):
    mae = tiny_mae(norm_pix_loss=norm_pix_loss)
    x = images(2)
    loss, pred, mask = mae(x, generator=torch.Generator().manual_seed(0))
    visible, hidden = torch.nonzero(mask[0] == 0)[0, 0].item(), torch.nonzero(mask[0] == 1)[0, 0].item()

    def with_patch_changed(patch: int) -> torch.Tensor:
        changed = x.clone()  # patch p sits at grid row p // 4, column p % 4, 2x2 pixels
        r, c = 2 * (patch // 4), 2 * (patch % 4)
        changed[0, 0, r : r + 2, c : c + 2] = torch.tensor([[3.0, -1.0], [0.5, 2.0]])
        return changed

    assert torch.allclose(mae.forward_loss(x, pred, mask), loss)
    assert mae.forward_loss(with_patch_changed(visible), pred, mask).item() == loss.item()
    assert abs(mae.forward_loss(with_patch_changed(hidden), pred, mask).item() - loss.item()) > 1e-3


def test_reconstruct_pastes_the_visible_patches_exactly():
    mae = tiny_mae()
    x = images()
    masked, recon, pasted = mae.reconstruct(x, generator=torch.Generator().manual_seed(0))
    _, _, mask = mae(x, generator=torch.Generator().manual_seed(0))
    assert masked.shape == recon.shape == pasted.shape == x.shape
    pixel_mask = mask.view(6, 1, 4, 1, 4, 1).expand(-1, -1, -1, 2, -1, 2).reshape(6, 1, 8, 8).bool()
    assert torch.equal(pasted[~pixel_mask], x[~pixel_mask])  # visible: the input, bit for bit
    assert torch.equal(pasted[pixel_mask], recon[pixel_mask])  # hidden: the prediction
    assert torch.equal(masked[~pixel_mask], x[~pixel_mask]) and masked[pixel_mask].abs().sum() == 0
    assert mae.training  # reconstruct restores the training mode


def test_gradients_reach_the_encoder_and_the_decoder():
    mae = tiny_mae()
    loss, _, _ = mae(images())
    loss.backward()
    for name in ("encoder.patch_embed.proj.weight", "encoder.pos_embed", "encoder.cls_token",
                 "encoder.blocks.1.mlp.fc2.weight", "encoder.norm.weight", "decoder_embed.weight",
                 "mask_token", "decoder_blocks.0.attn.qkv.weight", "decoder_pred.weight"):  # fmt: skip
        grad = dict(mae.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name
    assert mae.encoder.head.weight.grad is None  # the classifier head takes no part


@pytest.mark.usefixtures("one_thread")
def test_pretrain_mae_lowers_the_loss(toy):
    torch.manual_seed(0)
    mae = tiny_mae(TINY_AVG)
    history = pretrain_mae(
        mae, toy(n=64), epochs=12, batch_size=16, lr=3e-3, warmup_epochs=1, precision="fp32", progress=False
    )
    assert [r["epoch"] for r in history] == list(range(1, 13))
    assert history[-1]["train_loss"] < 0.6 * history[0]["train_loss"]  # 48 steps: the loss falls by more than 40%
    # Predicting every hidden patch flat scores 3/4 here (4 pixels standardised with the unbiased variance):
    # the model does better, so it uses the visible patches.
    assert history[-1]["train_loss"] < 0.7
    assert history[-1]["train_acc"] is None and history[-1]["val_loss"] is None  # no labels, no validation set
    assert not mae.training


@pytest.mark.usefixtures("one_thread")
def test_fractional_epochs_stop_part_way(toy):
    history = pretrain_mae(tiny_mae(), toy(n=64), epochs=1.5, batch_size=16, precision="fp32", progress=False)
    assert len(history) == 2 and history[-1]["lr"] == pytest.approx(1e-5)  # 6 steps, cosine down to min_lr


@pytest.mark.usefixtures("one_thread")
def test_pretraining_killed_after_an_epoch_resumes_to_the_same_weights(tmp_path, toy):
    data, val = toy(n=48), toy(n=16, seed=1)
    options = dict(epochs=3, batch_size=16, lr=3e-3, precision="fp32", val_set=val, progress=False)
    torch.manual_seed(0)
    whole = tiny_mae()
    history = pretrain_mae(whole, data, checkpoint=tmp_path / "whole.pt", **options)

    torch.manual_seed(0)
    killed = tiny_mae()
    first = pretrain_mae(killed, data, checkpoint=tmp_path / "run.pt", max_epochs_this_run=1, **options)
    assert len(first) == 1 and load_checkpoint(tmp_path / "run.pt")["kind"] == "mae"
    torch.manual_seed(1)  # a fresh process: other initial weights and another global generator state
    resumed = tiny_mae()
    again = pretrain_mae(resumed, data, checkpoint=tmp_path / "run.pt", resume=True, **options)

    ours, theirs = resumed.state_dict(), whole.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert [r["train_loss"] for r in again] == [r["train_loss"] for r in history]
    assert [r["val_loss"] for r in again] == [r["val_loss"] for r in history]
    assert history[0]["val_loss"] > history[-1]["val_loss"]  # scored on the same masks every epoch


@pytest.mark.usefixtures("one_thread")
def test_pretraining_clips_the_gradients(tmp_path, toy):
    def grad_norms(grad_clip: float) -> list[float]:
        norms = []

        def record(step, images, model):  # after the optimizer step the clipped gradients are still there
            grads = [p.grad for p in model.parameters() if p.grad is not None]
            norms.append(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])).item())

        torch.manual_seed(0)
        cfg = TrainConfig(epochs=1, batch_size=16, lr=3e-3, precision="fp32", crop_pad=0, grad_clip=grad_clip)
        fit(tiny_mae(), toy(n=48), cfg=cfg, objective=MaskedReconstruction(), step_callbacks=[record], progress=False)
        return norms

    free, clipped = grad_norms(0.0), grad_norms(0.05)
    assert min(free) > 0.05  # unclipped, every step's gradient is longer than the limit
    assert max(clipped) == pytest.approx(0.05, rel=1e-4)
    pretrain_mae(tiny_mae(), toy(n=32), epochs=1, batch_size=16, checkpoint=tmp_path / "m.pt", progress=False)
    assert load_checkpoint(tmp_path / "m.pt")["train_config"]["grad_clip"] == 1.0  # the recipe clips at norm 1


def test_the_pretrained_encoder_loads_into_a_classifier():
    for cfg in (TINY, TINY_AVG):
        mae = tiny_mae(cfg)
        state = mae.encoder.state_dict()
        assert not any(k.startswith(("decoder", "mask_token")) for k in state)
        classifier = VisionTransformer(cfg)
        classifier.load_state_dict(state, strict=True)
        assert classifier(images(3)).shape == (3, 4)
        assert torch.equal(classifier.blocks[0].attn.qkv.weight, mae.encoder.blocks[0].attn.qkv.weight)


@pytest.mark.parametrize(
    "change, words",
    [
        ({"stem": "conv"}, "stem='patch'"),
        ({"stem": "spt"}, "stem='patch'"),
        ({"pos_embed": "none"}, "pos_embed='none'"),
    ],
)
def test_unsupported_configs_are_refused(change, words):
    with pytest.raises(UsageError, match=words.replace("(", r"\(")):
        tiny_mae(TINY.replace(**change))


@pytest.mark.parametrize("ratio", [0.0, 1.0, 0.99])
def test_mask_ratios_that_hide_nothing_or_everything_are_refused(ratio):
    with pytest.raises(UsageError, match="mask_ratio"):
        tiny_mae(mask_ratio=ratio)


def test_wrong_image_size_is_a_clear_error():
    with pytest.raises(ValueError, match=r"expected images of shape \(B, 1, 8, 8\)"):
        tiny_mae()(torch.zeros(2, 1, 28, 28))


def test_fit_without_the_mae_objective_says_which_to_pass(toy):
    with pytest.raises(UsageError, match=r"MaskedAutoencoder returns no logits.*MaskedReconstruction\(\)"):
        fit(tiny_mae(), toy(n=16), cfg=TrainConfig(epochs=1, batch_size=16, precision="fp32"), progress=False)
