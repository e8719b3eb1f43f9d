"""Read a study's sagittal T2 series from a DICOMweb server and store LVP's SEG and SR back.

``dicomweb+http://host/dicom-web`` (or ``dicomweb+https://``) names the server's DICOMweb root.
QIDO-RS lists the study's series, WADO-RS metadata describes each MR series (plane from
ImageOrientationPatient, weighting as for a folder: :func:`lvp.io.dicom.choose_series`), WADO-RS
fetches the chosen one and STOW-RS stores the DICOM SEG and SR. The client is dicomweb-client.

Credentials come from the environment only, never from the command line or the URL (both end up
in shell histories and logs): ``LVP_DICOMWEB_TOKEN`` (a bearer token) or ``LVP_DICOMWEB_USER`` and
``LVP_DICOMWEB_PASSWORD`` (HTTP basic authentication). No message LVP writes contains them.

A reading-study case may name its image as ``dicomweb+http://host/dicom-web?study=UID[&series=UID]``
(:func:`parse_case_ref`); :func:`fetch_case` downloads that series once into a private cache
folder (``LVP_DICOMWEB_CACHE``, default ``~/.cache/lvp/dicomweb``) that the Slicer worklist then
loads like a DICOM folder, its result folder beside it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit, urlunsplit  # pydicom, requests: only when a server is used

from lvp.errors import InputError

PREFIXES = ("dicomweb+http://", "dicomweb+https://")
ENV_USER, ENV_PASSWORD, ENV_TOKEN = "LVP_DICOMWEB_USER", "LVP_DICOMWEB_PASSWORD", "LVP_DICOMWEB_TOKEN"
ENV_CACHE = "LVP_DICOMWEB_CACHE"
_COMPLETE = ".complete"  # written last into a cached series folder
T = TypeVar("T")


def is_dicomweb(text: str | Path) -> bool:
    """Whether an input names a DICOMweb server (``dicomweb+http(s)://...``)."""
    return str(text).startswith(PREFIXES)


def server_url(text: str) -> str:
    """The plain http(s) DICOMweb root of a ``dicomweb+`` input; refuses credentials in the URL."""
    if not is_dicomweb(text):
        raise InputError(f"{text!r} is not a DICOMweb address (dicomweb+http://host/dicom-web)")
    parts = urlsplit(text[len("dicomweb+"):])
    url = urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))
    if parts.username or parts.password:
        # The URL is not repeated: it holds the secret.
        raise InputError(f"the DICOMweb address holds credentials; give them in {ENV_USER} / {ENV_PASSWORD} "
                         f"(or {ENV_TOKEN}) instead, never in the address")
    if not parts.hostname:
        raise InputError(f"{text!r}: no server name in the DICOMweb address")
    return url


def parse_case_ref(text: str) -> tuple[str, str | None, str | None]:
    """``dicomweb+http://host/dicom-web?study=UID&series=UID`` -> (server URL, study, series)."""
    query = parse_qs(urlsplit(text[len("dicomweb+"):]).query) if is_dicomweb(text) else {}
    study, series = (query.get(k, [None])[0] for k in ("study", "series"))
    return server_url(text), study, series


def client(url: str) -> Any:
    """A dicomweb-client for ``url`` authenticated from the environment."""
    try:
        import requests
        from dicomweb_client.api import DICOMwebClient
    except ImportError:
        raise InputError("reading from a DICOMweb server needs the Python packages requests and dicomweb-client "
                         "(pip install dicomweb-client)") from None
    session = requests.Session()
    token = os.environ.get(ENV_TOKEN)
    user, password = os.environ.get(ENV_USER), os.environ.get(ENV_PASSWORD)
    if token:
        session.headers["Authorization"] = f"Bearer {token}"
    elif user is not None or password is not None:
        if not user or password is None:
            raise InputError(f"set both {ENV_USER} and {ENV_PASSWORD} (or {ENV_TOKEN}) for the DICOMweb server")
        session.auth = (user, password)
    dicomweb = DICOMwebClient(url=url, session=session)
    # Three attempts, 1 s then 2 s apart (the client's default, five attempts up to 16 s apart,
    # keeps a user waiting half a minute for a server that is simply down).
    dicomweb.set_http_retry_params(retry=True, max_attempts=3, wait_exponential_multiplier=500)
    return dicomweb


def _call(what: str, url: str, fn: Callable[[], T]) -> T:
    """Run a request; turn HTTP and connection failures into InputErrors that name no secret."""
    import requests

    try:
        return fn()
    except requests.HTTPError as err:
        status = err.response.status_code if err.response is not None else "?"
        hint = (f"; check {ENV_USER}/{ENV_PASSWORD} or {ENV_TOKEN}" if status in (401, 403) else "")
        raise InputError(f"the DICOMweb server {url} refused {what} (HTTP {status}){hint}") from None
    except requests.RequestException as err:
        raise InputError(f"the DICOMweb server {url} cannot be reached for {what} ({type(err).__name__})") from None


def _dataset(item: dict) -> Any:
    """A header from DICOM JSON, leaving out bulk data given by reference (pixels are not needed)."""
    import pydicom

    return pydicom.Dataset.from_json({k: v for k, v in item.items() if "BulkDataURI" not in v})


def _series_info(dicomweb: Any, url: str, study_uid: str, item: dict) -> Any:
    from lvp.io.dicom import SeriesInfo, _plane, _weighting
    from lvp.io.dicom_decode import orientation

    ds = _dataset(item)
    uid = str(ds.get("SeriesInstanceUID", ""))
    modality = str(ds.get("Modality", ""))
    count = int(ds.get("NumberOfSeriesRelatedInstances", 0) or 0)
    info = SeriesInfo(uid=uid, description=str(ds.get("SeriesDescription", "")), modality=modality)
    if modality == "MR":  # plane, weighting and frames come from one instance's full header
        metadata = _call("a WADO-RS metadata request", url,
                         lambda: dicomweb.retrieve_series_metadata(study_uid, uid))
        first = _dataset(metadata[0] if metadata else {})
        info.plane = _plane(orientation(first))
        info.weighting = _weighting(first)
        count = len(metadata) or count
        info.frames = sum(int(_dataset(m).get("NumberOfFrames", 1) or 1) for m in metadata)
    info.files = [Path(f"{uid}/{i}") for i in range(count)]  # stand-ins: only counted when choosing
    return info


def fetch_series(url: str, study_uid: str, folder: Path, series_uid: str | None = None) -> tuple[str, int]:
    """Find the study's sagittal T2 series (or ``series_uid``) and write its instances into ``folder``.

    Returns the series UID and the number of files written. A study with no such series, or
    several, is refused listing its series, as for a DICOM folder.
    """
    from lvp.io.dicom import choose_series

    dicomweb = client(url)
    found = _call("a QIDO-RS series search", url, lambda: dicomweb.search_for_series(study_uid))
    if not found:
        raise InputError(f"the DICOMweb server {url} has no series in study {study_uid}")
    series = [_series_info(dicomweb, url, study_uid, item) for item in found]
    if series_uid is not None and series_uid not in {s.uid for s in series}:
        raise InputError(f"series {series_uid} is not in study {study_uid} on {url}; the study holds:\n  "
                         + "\n  ".join(s.summary() for s in series))
    chosen = choose_series(series, series_uid)
    instances = _call("a WADO-RS series retrieval", url, lambda: dicomweb.retrieve_series(study_uid, chosen.uid))
    folder.mkdir(parents=True, exist_ok=True)
    for n, ds in enumerate(instances):
        ds.save_as(folder / f"IM{n:05d}.dcm", enforce_file_format=True)
    return chosen.uid, len(instances)


def store(url: str, paths: list[Path]) -> list[str]:
    """STOW-RS the DICOM files ``paths`` to the server; return their SOP Instance UIDs."""
    import pydicom

    datasets = [pydicom.dcmread(p) for p in paths]
    dicomweb = client(url)
    _call("a STOW-RS store", url, lambda: dicomweb.store_instances(datasets=datasets))
    return [str(ds.SOPInstanceUID) for ds in datasets]


def case_folder(ref: str, cache: Path | None = None) -> Path:
    """The local folder a DICOMweb case reference is fetched into (one per reference)."""
    url, study, series = parse_case_ref(ref)
    if not study:
        raise InputError("a DICOMweb case reference names its study: dicomweb+http://host/dicom-web?study=UID")
    root = Path(cache or os.environ.get(ENV_CACHE) or Path.home() / ".cache" / "lvp" / "dicomweb")
    key = hashlib.sha256(f"{url}|{study}|{series or ''}".encode()).hexdigest()[:20]
    return root / key / "series"


def fetch_case(ref: str, cache: Path | None = None) -> Path:
    """Download a DICOMweb case's series once (reused while complete) and return its folder.

    The series is written into a sibling temporary folder that is renamed into place with a
    completion mark, so an interrupted download is never taken for the series.
    """
    folder = case_folder(ref, cache)
    if (folder / _COMPLETE).is_file():
        return folder
    url, study, series = parse_case_ref(ref)
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    fetch_series(url, study or "", partial, series)
    (partial / _COMPLETE).write_text("")
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(partial, folder)
    return folder
