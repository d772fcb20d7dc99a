import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from auditor.geometry import apply_affine, crop_affine, face_box, invert_affine, rescale_affine, square_crop, warp_image


@settings(max_examples=100, deadline=None)
@given(cx=st.floats(-100, 2000), cy=st.floats(-100, 2000), side=st.floats(20, 1500), angle=st.floats(-np.pi, np.pi),
       pts=st.lists(st.tuples(st.floats(-500, 3000), st.floats(-500, 3000)), min_size=1, max_size=10))
def test_image_to_heatmap_and_back(cx, cy, side, angle, pts):
    xy_img = np.array(pts)
    to_hm = rescale_affine(256, 64) @ crop_affine(np.array([[cx, cy]]), np.array([side]), 256, angle)[0]
    xy_hm = apply_affine(to_hm, xy_img)
    back = apply_affine(invert_affine(to_hm), xy_hm)
    assert np.abs(back - xy_img).max() < 1e-3


def test_crop_centre_and_scale():
    m = crop_affine(np.array([[50.0, 80.0]]), np.array([100.0]), 200)[0]
    assert np.allclose(apply_affine(m, np.array([[50.0, 80.0], [100.0, 80.0]])), [[99.5, 99.5], [199.5, 99.5]])
    r = rescale_affine(256, 64)
    # the corners of the crop map to the corners of the heatmap
    assert np.allclose(apply_affine(r, np.array([[-0.5, -0.5], [255.5, 255.5]])), [[-0.5, -0.5], [63.5, 63.5]])


def test_square_crop_from_labels():
    xy = np.array([[[10.0, 20.0], [30.0, 60.0], [np.nan, np.nan]]])
    box = face_box(xy)
    assert np.allclose(box, [[10, 20, 30, 60]])
    centre, side = square_crop(box)
    assert np.allclose(centre, [[20, 40]]) and np.allclose(side, [50.0])


def test_warp_puts_pixels_where_the_affine_says():
    yy, xx = np.mgrid[0:90, 0:110]
    blob = np.exp(-((xx - 41.3) ** 2 + (yy - 52.6) ** 2) / (2 * 4.0**2))
    image = np.repeat((blob * 255).round().astype(np.uint8)[..., None], 3, axis=-1)
    m = crop_affine(np.array([[50.0, 45.0]]), np.array([80.0]), 64, angle=0.4)[0]
    crop = warp_image(image, m, 64)[..., 0].astype(float)
    w = crop / crop.sum()
    gy, gx = np.mgrid[0:64, 0:64]
    expected = apply_affine(m, np.array([[41.3, 52.6]]))[0]
    assert np.allclose([(w * gx).sum(), (w * gy).sum()], expected, atol=0.05)
