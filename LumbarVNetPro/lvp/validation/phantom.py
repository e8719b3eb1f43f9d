"""A synthetic lumbar spine MRI with known geometry, for testing labelling, measurements and grades.

The phantom is built analytically in a *spine frame* ``(lat, s, a)`` in millimetres: ``lat`` towards
the patient's left, ``s`` along the spine towards inferior, ``a`` towards posterior. Every
voxel centre of the output grid is mapped into that frame and classified, so the geometry is
exact up to the voxel sampling. The spine frame may be tilted in the sagittal plane
(``tilt_deg``) and the grid may have any axis orientation (``orientation``, an ITK orientation
code such as ``"LPS"`` or ``"RAI"``), so :func:`lvp.io.volume.canonical_volume` has to reorient it.

Anatomy (deliberately simple): vertebral bodies and discs are elliptic cylinders sharing one
posterior margin (``a = body_radius_ap``); discs may be wedge-shaped, bulge all round, or carry
a posterior box-shaped herniation of set displacement and base width; the dural sac is an
ellipse plus two lateral recess channels whose depth is set per level; each vertebra has a
posterior arch (pedicles, lamina, spinous process) that, as in SPIDER, is labelled vertebra.

Ground truth (:class:`DiscTruth`) is computed from the analytic shapes with the same measurement
definitions that :mod:`lvp.measure` uses, on a 0.05 mm grid, so a test can ask for agreement to
within a voxel.

Over 400 lines on purpose: the phantom's anatomy and its analytic ground truth must use the
same shape definitions; split apart, truth and image could disagree silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk

from lvp.labels import CANAL_LABEL, DISC_LABELS, SACRUM_LABEL, VERTEBRA_LABELS

# Intensities (fractions of the scale) of the tissues; nucleus brightness follows Pfirrmann.
_BACKGROUND, _BONE, _ANNULUS, _CSF = 0.15, 0.45, 0.3, 1.0
NUCLEUS_BY_PFIRRMANN = {1: 0.95, 2: 0.8, 3: 0.55, 4: 0.35, 5: 0.2}
_ORIENT_VECTORS = {"L": (1, 0, 0), "R": (-1, 0, 0), "P": (0, 1, 0), "A": (0, -1, 0), "S": (0, 0, 1), "I": (0, 0, -1)}
# Measurement conventions shared with lvp.measure (so the truth follows the same definitions).
RECESS_POSITION = 0.8  # recess depth is read at 80 % of the canal half-width from its centre
RECESS_PLANE_BELOW_MM = 4.0  # recess plane: this far below the disc's lower surface (pedicle level)
HEIGHT_POSITIONS = (0.1, 0.5, 0.9)  # anterior / middle / posterior disc height: fraction of depth


@dataclass
class Herniation:
    """A posterior box of disc material ``displacement_mm`` deep and ``base_width_mm`` wide."""

    displacement_mm: float
    base_width_mm: float
    center_lr_mm: float = 0.0  # offset to the patient's left (paracentral herniations)


@dataclass
class PhantomSpec:
    """Options of :func:`make_phantom` (defaults: a healthy five-lumbar spine with sacrum)."""

    n_lumbar: int = 5
    n_thoracic: int = 2  # vertebrae above L1 (T12, T11): drawn smaller, as thoracic bodies are
    sacrum: bool = True
    spacing: tuple[float, float, float] = (1.5, 0.8, 0.8)  # mm along (lr, si, ap)
    orientation: str = "LPS"  # ITK orientation code of the written grid
    tilt_deg: float = 0.0  # sagittal tilt of the spine (rotation about the left-right axis)
    lr_extent_mm: float | None = None  # narrow sagittal slab (SPIDER-like) when set
    noise: float = 0.0  # Gaussian noise, fraction of the intensity scale
    intensity_scale: float = 4095.0  # 12-bit by default
    seed: int = 0
    body_height_mm: float = 26.0
    body_radius_ap_mm: float = 16.0
    body_radius_lr_mm: float = 22.0
    thoracic_scale: float = 0.78  # thoracic bodies: this fraction of the lumbar size
    disc_height_mm: float = 10.0
    canal_ap_mm: float = 15.0
    canal_width_mm: float = 16.0  # central ellipse; the recesses reach 11 mm from the midline
    recess_depth_mm: float = 6.0
    epidural_gap_mm: float = 1.5  # between the posterior body margin and the dural sac
    sacrum_length_mm: float = 60.0
    # Per disc level (keys are disc names such as "L4-L5"):
    disc_heights: dict[str, tuple[float, float]] = field(default_factory=dict)  # (anterior, posterior)
    herniations: dict[str, Herniation] = field(default_factory=dict)
    bulges: dict[str, float] = field(default_factory=dict)  # mm beyond the margins, all round
    stenoses: dict[str, float] = field(default_factory=dict)  # canal AP diameter at the disc, mm
    recesses: dict[str, tuple[float, float]] = field(default_factory=dict)  # (left, right) depth, mm
    pfirrmann: dict[str, int] = field(default_factory=dict)


@dataclass
class DiscTruth:
    """Known geometry of one disc level (lengths in mm, areas in mm², points in LPS mm)."""

    name: str
    label: int
    center_lps: np.ndarray
    normal_lps: np.ndarray  # towards inferior
    height_anterior_mm: float
    height_middle_mm: float
    height_posterior_mm: float
    disc_height_index: float
    herniation_displacement_mm: float
    herniation_base_width_mm: float
    bulge_mm: float
    canal_ap_mm: float
    dural_sac_area_mm2: float
    recess_left_mm: float
    recess_right_mm: float
    signal_ratio: float
    pfirrmann: int


@dataclass
class VertebraTruth:
    """Known name, label and body centre (LPS mm) of one vertebra."""

    name: str
    label: int
    center_lps: np.ndarray


@dataclass
class Phantom:
    """The phantom images on the written grid and their ground truth."""

    image: sitk.Image
    semantic: sitk.Image  # network classes 0..3
    levels: sitk.Image  # TotalSpineSeg values
    discs: list[DiscTruth]
    vertebrae: list[VertebraTruth]
    spec: PhantomSpec

    def disc(self, name: str) -> DiscTruth:
        """The truth of the disc called ``name``."""
        return next(d for d in self.discs if d.name == name)


@dataclass
class _Disc:
    name: str
    center_s: float
    height_ant: float
    height_post: float
    radius_ap: float
    radius_lr: float
    center_a: float
    herniation: Herniation | None
    bulge: float
    canal_ap: float
    recess: tuple[float, float]
    pfirrmann: int

    def half_height(self, a: np.ndarray) -> np.ndarray:
        # Heights vary linearly from the anterior to the posterior margin (a wedge disc).
        t = np.clip((a - (self.center_a - self.radius_ap)) / (2 * self.radius_ap), 0.0, 1.0)
        return 0.5 * (self.height_ant + t * (self.height_post - self.height_ant))


def _vertebra_names(spec: PhantomSpec) -> list[str]:
    thoracic = [f"T{12 - i}" for i in range(spec.n_thoracic)][::-1]
    return thoracic + [f"L{i + 1}" for i in range(spec.n_lumbar)]


def _disc_label(name: str) -> int:
    if name.endswith("-S"):
        return DISC_LABELS["L5-S"]  # the lumbosacral disc, whatever the lumbar count
    return DISC_LABELS.get(name, 0)


def _layout(spec: PhantomSpec) -> tuple[list[tuple[str, float, float, float]], list[_Disc], float]:
    """Vertebrae (name, top s, bottom s, scale) and discs along the spine axis."""
    names = _vertebra_names(spec)
    r_ap, r_lr = spec.body_radius_ap_mm, spec.body_radius_lr_mm
    vertebrae, discs = [], []
    s = 0.0
    for i, name in enumerate(names):
        scale = spec.thoracic_scale if name.startswith("T") else 1.0
        height = spec.body_height_mm * (0.85 if name.startswith("T") else 1.0)
        vertebrae.append((name, s, s + height, scale))
        s += height
        below = names[i + 1] if i + 1 < len(names) else ("S" if spec.sacrum else None)
        if below is None:
            break
        dname = f"{name}-{below}"
        h_ant, h_post = spec.disc_heights.get(dname, (spec.disc_height_mm, spec.disc_height_mm))
        d = _Disc(
            name=dname,
            center_s=s + max(h_ant, h_post) / 2,
            height_ant=h_ant,
            height_post=h_post,
            radius_ap=r_ap * scale,
            radius_lr=r_lr * scale,
            center_a=r_ap - r_ap * scale,  # posterior margins line up at a = r_ap
            herniation=spec.herniations.get(dname),
            bulge=spec.bulges.get(dname, 0.0),
            canal_ap=spec.stenoses.get(dname, spec.canal_ap_mm),
            recess=spec.recesses.get(dname, (spec.recess_depth_mm, spec.recess_depth_mm)),
            pfirrmann=spec.pfirrmann.get(dname, 2),
        )
        discs.append(d)
        s += max(h_ant, h_post)
    bottom = s + (spec.sacrum_length_mm if spec.sacrum else 0.0)
    return vertebrae, discs, bottom


class _Model:
    """Classifies spine-frame points (arrays lat, s, a) into tissues, vectorised per voxel."""

    def __init__(self, spec: PhantomSpec) -> None:
        self.spec = spec
        self.vertebrae, self.discs, self.bottom = _layout(spec)
        self.canal_front = spec.body_radius_ap_mm + spec.epidural_gap_mm
        self.max_canal = max([spec.canal_ap_mm] + [d.canal_ap for d in self.discs])
        self.centers = np.array([d.center_s for d in self.discs])

    def _nearest_disc(self, s: np.ndarray, discs: list[_Disc]) -> np.ndarray:
        centers = np.array([d.center_s for d in discs])
        if len(discs) == 1:
            return np.zeros(s.shape, np.intp)
        return np.searchsorted((centers[1:] + centers[:-1]) / 2, s)

    def disc_mask(
        self, lat: np.ndarray, s: np.ndarray, a: np.ndarray, discs: list[_Disc] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Disc voxels and the index (into ``discs``) of the nearest disc of every point."""
        discs = self.discs if discs is None else discs
        j = self._nearest_disc(s, discs)

        def par(fn) -> np.ndarray:
            return np.array([fn(d) for d in discs], dtype=np.float32)[j]

        ca, rap, rlr = par(lambda d: d.center_a), par(lambda d: d.radius_ap), par(lambda d: d.radius_lr)
        h_ant, h_post, bulge = par(lambda d: d.height_ant), par(lambda d: d.height_post), par(lambda d: d.bulge)
        ds = s - par(lambda d: d.center_s)
        t = np.clip((a - (ca - rap)) / (2 * rap), 0.0, 1.0)
        half = 0.5 * (h_ant + t * (h_post - h_ant))
        mask = (np.abs(ds) <= half) & (((a - ca) / (rap + bulge)) ** 2 + (lat / (rlr + bulge)) ** 2 <= 1.0)
        if any(d.herniation is not None for d in discs):
            hern = [d.herniation or Herniation(0.0, 0.0) for d in discs]
            disp = np.array([h.displacement_mm for h in hern], np.float32)[j]
            width = np.array([h.base_width_mm for h in hern], np.float32)[j]
            lc = np.array([h.center_lr_mm for h in hern], np.float32)[j]
            edge = ca + rap * np.sqrt(np.clip(1 - (lat / rlr) ** 2, 0, None))
            box = (disp > 0) & (np.abs(lat - lc) <= width / 2) & (a >= edge - 0.5) & (a <= edge + disp)
            mask |= box & (np.abs(ds) <= h_post / 2)
        return mask, j

    def canal(self, lat: np.ndarray, s: np.ndarray, a: np.ndarray) -> np.ndarray:
        """The dural sac: a central ellipse and two lateral recess channels."""
        spec = self.spec
        j = self._nearest_disc(s, self.discs)
        hmax = np.array([max(d.height_ant, d.height_post) for d in self.discs], np.float32)[j]
        ds = s - self.centers.astype(np.float32)[j]
        near = np.abs(ds) <= hmax / 2 + 4.0
        below = (ds >= 0) & (ds <= hmax / 2 + 10.0)
        depth = np.where(near, np.array([d.canal_ap for d in self.discs], np.float32)[j], spec.canal_ap_mm)
        rec_l = np.where(below, np.array([d.recess[0] for d in self.discs], np.float32)[j], spec.recess_depth_mm)
        rec_r = np.where(below, np.array([d.recess[1] for d in self.discs], np.float32)[j], spec.recess_depth_mm)
        a0 = self.canal_front
        half_w = spec.canal_width_mm / 2
        ellipse = (lat / half_w) ** 2 + ((a - a0 - depth / 2) / (depth / 2)) ** 2 <= 1.0
        in_band = (np.abs(lat) >= 5.0) & (np.abs(lat) <= 11.0) & (a >= a0)
        recess = in_band & (((lat > 0) & (a <= a0 + rec_l)) | ((lat < 0) & (a <= a0 + rec_r)))
        top = self.vertebrae[0][1]
        return (ellipse | recess) & (s >= top) & (s <= self.bottom)

    def bone(self, lat: np.ndarray, s: np.ndarray, a: np.ndarray) -> np.ndarray:
        """Index of the bone (vertebra body and arch; sacrum last) at each point, -1 for none."""
        spec = self.spec
        r_ap, r_lr = spec.body_radius_ap_mm, spec.body_radius_lr_mm
        back = self.canal_front + self.max_canal
        k = np.searchsorted(self.centers, s)  # vertebra k lies between discs k-1 and k
        nv = len(self.vertebrae)
        kv = np.minimum(k, nv - 1)
        scale = np.array([v[3] for v in self.vertebrae], np.float32)[kv]
        top = np.array([v[1] for v in self.vertebrae], np.float32)[kv]
        bottom = np.array([v[2] for v in self.vertebrae], np.float32)[kv]
        ca = r_ap - r_ap * scale
        body = ((a - ca) / (r_ap * scale)) ** 2 + (lat / (r_lr * scale)) ** 2 <= 1.0
        body &= (s >= self.vertebrae[0][1]) & (s <= (self.bottom if spec.sacrum else self.vertebrae[-1][2]))
        arch_s = (s >= top + 2.0) & (s <= bottom - 2.0)
        pedicles = (np.abs(lat) >= 12.0) & (np.abs(lat) <= 16.0) & (a >= r_ap - 3.0) & (a <= back + 1.0)
        lamina = (np.abs(lat) <= 16.0) & (a > back + 1.0) & (a <= back + 8.0)
        spinous = (np.abs(lat) <= 3.0) & (a > back + 8.0) & (a <= back + 25.0)
        vert = body | (arch_s & (pedicles | lamina | spinous))
        out = np.where(vert & (k < nv), k, -1)
        if spec.sacrum:
            start = self.centers[-1]
            t = np.clip((s - start) / spec.sacrum_length_mm, 0.0, 1.0)
            rap = r_ap * (1.0 - 0.5 * t)
            sac = ((a - (r_ap - rap) - 6.0 * t) / rap) ** 2 + (lat / (r_lr * 1.1)) ** 2 <= 1.0
            arch = (np.abs(lat) <= 16.0) & (a > back + 1.0) & (a <= back + 8.0)
            arch |= (np.abs(lat) >= 12.0) & (np.abs(lat) <= 16.0) & (a >= r_ap - 3.0) & (a <= back + 1.0)
            sac |= arch & (s >= start + 8.0)
            out = np.where(sac & (k == nv) & (s <= self.bottom), nv, out)
        return out


def _spine_rotation(tilt_deg: float) -> np.ndarray:
    """Columns: the LPS directions of the spine-frame axes (lat, s, a)."""
    t = np.deg2rad(tilt_deg)
    l_dir = np.array([1.0, 0.0, 0.0])
    s_dir = np.array([0.0, np.sin(t), -np.cos(t)])  # inferior, tilted towards posterior
    a_dir = np.array([0.0, np.cos(t), np.sin(t)])
    return np.stack([l_dir, s_dir, a_dir], axis=1)


def _direction(orientation: str) -> np.ndarray:
    code = orientation.upper()
    if len(code) != 3 or sorted({c for c in code}) != sorted(code):
        raise ValueError(f"bad orientation code {orientation!r}")
    cols = [np.array(_ORIENT_VECTORS[c], dtype=float) for c in code]
    direction = np.stack(cols, axis=1)
    if abs(abs(np.linalg.det(direction)) - 1.0) > 1e-6:
        raise ValueError(f"orientation code {orientation!r} repeats an axis")
    return direction


def _cross_section_truth(model: _Model, d: _Disc, s: float, fine: float = 0.05) -> dict[str, float]:
    """Canal AP, dural sac area and recess depths on the axial plane at ``s`` (fine sampling)."""
    a0 = model.canal_front - 5.0
    ls = np.arange(-15.0, 15.0, fine) + fine / 2
    as_ = np.arange(a0, a0 + model.max_canal + 8.0, fine) + fine / 2
    L, A = np.meshgrid(ls, as_, indexing="ij")
    S = np.full_like(L, s)
    canal = model.canal(L, S, A)
    canal &= ~model.disc_mask(L, S, A, [d])[0]
    cols = np.nonzero(canal.any(axis=1))[0]
    if cols.size == 0:
        return {"ap": 0.0, "area": 0.0, "left": 0.0, "right": 0.0}
    lo, hi = ls[cols[0]], ls[cols[-1]]
    mid = (lo + hi) / 2
    half = (hi - lo) / 2

    def depth_at(x: float) -> float:
        return float(canal[int(np.argmin(np.abs(ls - x)))].sum() * fine)

    return {
        "ap": depth_at(mid),
        "area": float(canal.sum() * fine * fine),
        "left": depth_at(mid + RECESS_POSITION * half),
        "right": depth_at(mid - RECESS_POSITION * half),
    }


def _disc_truth(model: _Model, d: _Disc, to_lps, rot: np.ndarray) -> DiscTruth:
    front = d.center_a - d.radius_ap - d.bulge
    back = d.center_a + d.radius_ap  # the posterior margin line of the bodies
    depth = back - front
    heights = [2 * float(d.half_height(np.array(front + f * depth))) for f in HEIGHT_POSITIONS]
    mid_disc = _cross_section_truth(model, d, d.center_s)
    recess = _cross_section_truth(model, d, d.center_s + d.height_post / 2 + RECESS_PLANE_BELOW_MM)
    h = d.herniation
    disp = h.displacement_mm if h else d.bulge
    width = h.base_width_mm if h else 0.0
    nucleus = NUCLEUS_BY_PFIRRMANN[d.pfirrmann]
    return DiscTruth(
        name=d.name,
        label=_disc_label(d.name),
        center_lps=to_lps(np.array([0.0, d.center_s, d.center_a])),
        normal_lps=rot[:, 1].copy(),
        height_anterior_mm=heights[0],
        height_middle_mm=heights[1],
        height_posterior_mm=heights[2],
        disc_height_index=float(np.mean(heights) / depth),
        herniation_displacement_mm=float(disp),
        herniation_base_width_mm=float(width),
        bulge_mm=d.bulge,
        canal_ap_mm=mid_disc["ap"],
        dural_sac_area_mm2=mid_disc["area"],
        recess_left_mm=recess["left"],
        recess_right_mm=recess["right"],
        signal_ratio=nucleus / _CSF,
        pfirrmann=d.pfirrmann,
    )


def make_phantom(spec: PhantomSpec | None = None, **options) -> Phantom:
    """Render a phantom: ``make_phantom(n_lumbar=6, tilt_deg=15, orientation="RAI")``."""
    spec = spec or PhantomSpec(**options)
    if spec.n_lumbar not in (4, 5, 6):
        raise ValueError("n_lumbar must be 4, 5 or 6")
    model = _Model(spec)
    rot = _spine_rotation(spec.tilt_deg)

    # Bounding box of the anatomy in the spine frame, then in LPS.
    lr_half = spec.lr_extent_mm / 2 if spec.lr_extent_mm else spec.body_radius_lr_mm + 12.0
    # Without a sacrum the field of view ends inside the lowest vertebra (a thoracolumbar scan).
    s_lo, s_hi = model.vertebrae[0][1] - 10.0, model.bottom + (10.0 if spec.sacrum else -3.0)
    a_lo = -spec.body_radius_ap_mm - 12.0
    a_hi = model.canal_front + model.max_canal + 35.0
    corners = np.array([[x, y, z] for x in (-lr_half, lr_half) for y in (s_lo, s_hi) for z in (a_lo, a_hi)])
    lps_corners = corners @ rot.T
    if spec.lr_extent_mm:  # a slab: clip the left-right extent to the slab itself
        lps_corners[:, 0] = np.clip(lps_corners[:, 0], -lr_half, lr_half)
    lo, hi = lps_corners.min(axis=0), lps_corners.max(axis=0)

    direction = _direction(spec.orientation)
    # Spacing per ITK axis: each axis takes the spacing of its anatomical direction.
    anat_spacing = {0: spec.spacing[0], 1: spec.spacing[2], 2: spec.spacing[1]}  # L, P, S components
    comps = [int(np.argmax(np.abs(direction[:, i]))) for i in range(3)]
    spacing = np.array([anat_spacing[c] for c in comps])
    size = [int(np.ceil((hi[c] - lo[c]) / spacing[i])) + 1 for i, c in enumerate(comps)]
    # Centre the grid on the box so that every orientation samples the same points.
    mid = (lo + hi) / 2
    half = [(size[i] - 1) * spacing[i] / 2 for i in range(3)]
    origin = np.zeros(3)
    for i, c in enumerate(comps):
        origin[c] = mid[c] - half[i] if direction[c, i] > 0 else mid[c] + half[i]
    # Index grids in numpy order (z, y, x) -> LPS.
    # Spine-frame coordinate of every voxel: linear in the index, so built from 1-D ramps.
    m = rot.T @ direction @ np.diag(spacing)
    off = rot.T @ origin
    ramps = [np.arange(n, dtype=np.float32) for n in size]  # ITK order x, y, z
    shape = tuple(size[::-1])
    lat, s, a = (
        (
            off[r]
            + (m[r, 2] * ramps[2])[:, None, None]
            + (m[r, 1] * ramps[1])[None, :, None]
            + (m[r, 0] * ramps[0])[None, None, :]
        ).astype(np.float32)
        * np.ones(shape, np.float32)
        for r in range(3)
    )

    semantic = np.zeros(lat.shape, np.uint8)
    levels = np.zeros(lat.shape, np.int16)
    image = np.full(lat.shape, _BACKGROUND, np.float32)
    names = [v[0] for v in model.vertebrae] + (["sacrum"] if spec.sacrum else [])
    bone_values = np.array([SACRUM_LABEL if n == "sacrum" else VERTEBRA_LABELS[n] for n in names], np.int16)
    bone = model.bone(lat, s, a)
    semantic[bone >= 0] = 1
    levels[bone >= 0] = bone_values[bone[bone >= 0]]
    image[bone >= 0] = _BONE
    canal = model.canal(lat, s, a)
    semantic[canal] = 3
    levels[canal] = CANAL_LABEL
    image[canal] = _CSF
    disc, j = model.disc_mask(lat, s, a)
    semantic[disc] = 2
    levels[disc] = np.array([_disc_label(d.name) for d in model.discs], np.int16)[j[disc]]
    image[disc] = _ANNULUS
    ca = np.array([d.center_a for d in model.discs], np.float32)[j]
    rap = np.array([d.radius_ap for d in model.discs], np.float32)[j]
    rlr = np.array([d.radius_lr for d in model.discs], np.float32)[j]
    core = disc & (((a - ca) / (0.6 * rap)) ** 2 + (lat / (0.6 * rlr)) ** 2 <= 1)
    nucleus = np.array([NUCLEUS_BY_PFIRRMANN[d.pfirrmann] for d in model.discs], np.float32)
    image[core] = nucleus[j[core]]
    if spec.noise > 0:
        rng = np.random.default_rng(spec.seed)
        image += rng.normal(0.0, spec.noise, image.shape).astype(np.float32)
    image = np.clip(image * spec.intensity_scale, 0, None)
    dtype = np.uint16 if spec.intensity_scale > 255 else np.uint8
    image = np.round(np.minimum(image, np.iinfo(dtype).max)).astype(dtype)

    def write(arr: np.ndarray) -> sitk.Image:
        img = sitk.GetImageFromArray(arr)
        img.SetSpacing(tuple(float(v) for v in spacing))
        img.SetOrigin(tuple(float(v) for v in origin))
        img.SetDirection(tuple(float(v) for v in direction.ravel()))
        return img

    to_lps = lambda p: rot @ np.asarray(p, dtype=float)
    vertebrae = [
        VertebraTruth(n, VERTEBRA_LABELS[n], to_lps([0.0, (top + bot) / 2, spec.body_radius_ap_mm * (1 - sc)]))
        for n, top, bot, sc in model.vertebrae
    ]
    if spec.sacrum:
        top = model.discs[-1].center_s
        vertebrae.append(VertebraTruth("sacrum", SACRUM_LABEL, to_lps([0.0, top + spec.sacrum_length_mm / 2, 0.0])))
    discs = [_disc_truth(model, d, to_lps, rot) for d in model.discs]
    return Phantom(write(image), write(semantic), write(levels), discs, vertebrae, spec)
