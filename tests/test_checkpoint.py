import pytest
import torch

from vitnb import VisionTransformer, ViTConfig
from vitnb.checkpoint import load_checkpoint, load_model, save_checkpoint, save_model


def test_model_round_trip_with_weights_only(tmp_path):
    cfg = ViTConfig(
        img_size=16,
        patch_size=4,
        in_chans=1,
        num_classes=3,
        embed_dim=16,
        depth=1,
        num_heads=2,
        pos_embed="sincos",
        lsa=True,
    )
    model = VisionTransformer(cfg).eval()
    path = save_model(tmp_path / "m.pt", model, epoch=3)
    assert torch.load(path, weights_only=True)["epoch"] == 3
    loaded, ckpt = load_model(path)
    x = torch.randn(2, 1, 16, 16)
    assert loaded.cfg == cfg and torch.equal(loaded(x), model(x))
    assert not list(tmp_path.glob(".*tmp"))


def test_failed_write_keeps_the_previous_checkpoint(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", {"step": torch.tensor(1)})

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        save_checkpoint(path, {"step": Unpicklable()})
    assert load_checkpoint(path)["step"] == 1
    assert not list(tmp_path.glob(".*tmp"))


def test_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "missing.pt")
    save_checkpoint(tmp_path / "other.pt", {"weights": torch.zeros(1)})
    with pytest.raises(ValueError, match="not a vitnb model checkpoint"):
        load_model(tmp_path / "other.pt")
