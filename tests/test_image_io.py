import numpy as np
import pytest
from PIL import Image

from hyperdet_hf.image_io import ImageError, load_rgb
from hyperdet_hf.layouts import scan_benchmark, scan_labeled_folder


def _rgb_array(h=20, w=24, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_rgb_png_round_trips_exactly(tmp_path):
    arr = _rgb_array()
    Image.fromarray(arr).save(tmp_path / "a.png")
    assert np.array_equal(np.asarray(load_rgb(tmp_path / "a.png")), arr)


def test_rgba_drops_alpha_without_compositing(tmp_path):
    arr = _rgb_array()
    rgba = np.dstack([arr, np.zeros(arr.shape[:2], np.uint8)])  # fully transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    assert np.array_equal(np.asarray(load_rgb(tmp_path / "a.png")), arr)


def test_grayscale_palette_bilevel_cmyk(tmp_path):
    gray = _rgb_array()[..., 0]
    Image.fromarray(gray, "L").save(tmp_path / "g.png")
    out = np.asarray(load_rgb(tmp_path / "g.png"))
    assert out.shape == (20, 24, 3) and np.array_equal(out[..., 1], gray)
    Image.fromarray(_rgb_array()).convert("P").save(tmp_path / "p.png")
    assert load_rgb(tmp_path / "p.png").mode == "RGB"
    Image.fromarray(gray > 128).save(tmp_path / "b.png")
    assert np.asarray(load_rgb(tmp_path / "b.png")).max() == 255
    Image.fromarray(_rgb_array()).convert("CMYK").save(tmp_path / "c.jpg")
    assert load_rgb(tmp_path / "c.jpg").mode == "RGB"


def test_16bit_is_scaled_to_8bit(tmp_path):
    arr16 = (np.arange(20 * 24, dtype=np.uint16).reshape(20, 24) * 130).astype(np.uint16)
    Image.fromarray(arr16).save(tmp_path / "d.png")
    out = np.asarray(load_rgb(tmp_path / "d.png"))
    assert out.dtype == np.uint8 and out.shape == (20, 24, 3)
    np.testing.assert_allclose(out[..., 0], np.rint(arr16 / 257.0), atol=1)


def test_animated_gif_gives_first_frame(tmp_path):
    frames = [Image.fromarray(np.full((8, 8, 3), v, np.uint8)) for v in (10, 200)]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    out = np.asarray(load_rgb(tmp_path / "a.gif"))
    assert abs(int(out.mean()) - 10) <= 2


@pytest.mark.parametrize(
    "content, reason",
    [(b"", "empty"), (b"hello, not an image", "not-an-image")],
)
def test_bad_bytes(tmp_path, content, reason):
    path = tmp_path / "x.png"
    path.write_bytes(content)
    with pytest.raises(ImageError) as err:
        load_rgb(path)
    assert err.value.reason == reason and str(path) in str(err.value)


def test_truncated_file_is_corrupt(tmp_path):
    Image.fromarray(_rgb_array(64, 64)).save(tmp_path / "t.png")
    data = (tmp_path / "t.png").read_bytes()
    (tmp_path / "t.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError) as err:
        load_rgb(tmp_path / "t.png")
    assert err.value.reason == "corrupt"


def test_oversize_refused_and_missing_reported(tmp_path):
    Image.fromarray(_rgb_array(100, 100)).save(tmp_path / "big.png")
    with pytest.raises(ImageError) as err:
        load_rgb(tmp_path / "big.png", max_pixels=5000)
    assert err.value.reason == "too-large"
    with pytest.raises(ImageError) as err:
        load_rgb(tmp_path / "nope.png")
    assert err.value.reason == "missing"


def _touch_image(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(_rgb_array(4, 4)).save(path)


def test_layouts_any_depth_and_genimage(tmp_path):
    root = tmp_path / "bench"
    _touch_image(root / "progan" / "car" / "0_real" / "a.png")
    _touch_image(root / "progan" / "car" / "1_fake" / "b.png")
    _touch_image(root / "progan" / "cat" / "1_fake" / "deep" / "c.png")
    _touch_image(root / "progan" / "stray.png")
    _touch_image(root / "midj" / "val" / "nature" / "n.png")
    _touch_image(root / "midj" / "val" / "ai" / "f.png")
    (root / "empty").mkdir()
    examples, unlabeled = scan_labeled_folder(root / "progan", "progan")
    assert [(e.path.split("progan/")[1], e.label) for e in examples] == [
        ("car/0_real/a.png", 0), ("car/1_fake/b.png", 1), ("cat/1_fake/deep/c.png", 1)]
    assert unlabeled == 1
    bench = scan_benchmark(root)
    assert sorted(bench) == ["midj", "progan"]
    assert sorted(e.label for e in bench["midj"]) == [0, 1]


def test_missing_or_empty_roots_fail_with_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        scan_labeled_folder(tmp_path / "nowhere")
    with pytest.raises(ValueError, match=str(tmp_path)):
        scan_benchmark(tmp_path)
