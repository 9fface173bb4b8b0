"""Feature stores over the four public layouts, L2-normalisation, non-finite guards, and resampling."""

import numpy as np
import pytest

from tvgkit.data.features import open_features, resample, write_hdf5

FEATURES = {
    "vid_a": np.arange(12, dtype=np.float32).reshape(4, 3),
    "vid_b": np.array([[3.0, 4.0, 0.0], [0.0, 0.0, 0.0]], dtype=np.float32),
}


def _write(layout, tmp_path):
    if layout == "hdf5":
        return write_hdf5(FEATURES, tmp_path / "f.hdf5")
    if layout == "hdf5-c3d":
        return write_hdf5(FEATURES, tmp_path / "c3d.hdf5", group_key="c3d_features")
    folder = tmp_path / layout
    folder.mkdir()
    for vid, array in FEATURES.items():
        if layout == "npy":
            np.save(folder / f"{vid}.npy", array.astype(np.float64))  # stores hand back float32 whatever is stored
        else:
            np.savez(folder / f"{vid}.npz", features=array)
    return folder


@pytest.mark.parametrize("layout", ["hdf5", "hdf5-c3d", "npy", "npz"])
def test_layouts_round_trip_and_are_detected(tmp_path, layout):
    path = _write(layout, tmp_path)
    with open_features(path) as store:
        assert store.layout == layout
        assert sorted(store.vids) == ["vid_a", "vid_b"]
        assert store.dim == 3
        assert "vid_a" in store and "vid_c" not in store
        assert store.missing(["vid_c", "vid_a", "vid_d"]) == ["vid_c", "vid_d"]
        for vid, array in FEATURES.items():
            got = store[vid]
            assert got.dtype == np.float32
            np.testing.assert_array_equal(got, array)
        with pytest.raises(KeyError, match="no features for video 'vid_c'"):
            store["vid_c"]


def test_l2_normalise_gives_unit_rows_and_keeps_zero_rows(tmp_path):
    with open_features(write_hdf5(FEATURES, tmp_path / "f.h5"), l2_normalise=True) as store:
        np.testing.assert_allclose(store["vid_b"], [[0.6, 0.8, 0.0], [0.0, 0.0, 0.0]], atol=1e-7)
        np.testing.assert_allclose(np.linalg.norm(store["vid_a"], axis=1), 1.0, atol=1e-6)


def test_non_finite_features_name_the_video(tmp_path):
    folder = tmp_path / "npy"
    folder.mkdir()
    np.save(folder / "good.npy", np.ones((2, 3)))
    np.save(folder / "broken.npy", np.array([[1.0, np.nan, 0.0], [1.0, 1.0, 1.0], [np.inf, 0.0, 0.0]]))
    store = open_features(folder, layout="npy")
    assert store["good"].shape == (2, 3)
    with pytest.raises(ValueError, match=r"video 'broken' hold non-finite values in 2 clip\(s\)"):
        store["broken"]
    with pytest.raises(ValueError, match="video 'x' hold non-finite values"):
        write_hdf5({"x": np.full((1, 2), np.nan)}, tmp_path / "bad.h5")


def test_resample_mean_pools_contiguous_bins_exactly():
    features = np.arange(14, dtype=np.float32).reshape(7, 2)  # rows [0,1], [2,3], ..., [12,13]
    pooled, mask = resample(features, 3)
    # bin edges floor(i * 7 / 3) = 0, 2, 4, 7: rows {0,1}, {2,3}, {4,5,6}
    np.testing.assert_array_equal(pooled, [[1.0, 2.0], [5.0, 6.0], [10.0, 11.0]])
    assert mask.tolist() == [True, True, True]
    same, mask = resample(features, 7)
    np.testing.assert_array_equal(same, features)
    assert mask.all()
    np.testing.assert_array_equal(resample(features, 1)[0], features.mean(axis=0, keepdims=True))


def test_resample_pads_shorter_videos_with_a_mask():
    features = np.ones((3, 2), dtype=np.float32)
    padded, mask = resample(features, 5)
    assert padded.shape == (5, 2) and padded.dtype == np.float32
    np.testing.assert_array_equal(padded[3:], 0.0)
    np.testing.assert_array_equal(padded[:3], 1.0)
    assert mask.tolist() == [True, True, True, False, False]
    with pytest.raises(ValueError, match="expected non-empty"):
        resample(np.zeros((0, 2)), 4)
