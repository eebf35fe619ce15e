"""Library vectors + facts -> groups of duplicate photos for review (issue 10 §4); never deletes.

Three kinds:
- exact: byte-identical files (same size, then the same blake2b of the whole file);
- near: the same picture resized, re-encoded, lightly cropped, rotated by EXIF or made grey:
  CLIP neighbours (and photos whose hashes share a band) confirmed by a perceptual hash (pHash
  of the upright picture and of 3x3 crop windows, distance <= near_max_hash bits of 64);
- similar: burst shots: the same camera within similar_seconds and cosine >= similar_min_cosine.

Groups do not chain: a group is a medoid and the photos confirmed against that medoid itself,
so A~B and B~C never pull in a C unlike A unless both match the medoid B. Each photo is in one
group at most. Each group names a keeper (largest resolution, then file size, EXIF
completeness, earliest capture) and, for every member, the evidence against the medoid.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from imgsearch.photohash import PHash, content_hash, hash_distance, perceptual_hash, picture_hash

if TYPE_CHECKING:
    from imgsearch.vectors import IndexParams, VectorIndex

KINDS = ("exact", "near", "similar")
# (m, d) queries, k -> (scores (m, k), row indices (m, k); -1 where there is none)
NeighboursFn = Callable[[npt.NDArray[np.float32], int], tuple[np.ndarray, np.ndarray]]
FLAT_MAX = 20_000  # faiss_neighbours: exact search up to this many vectors
PCA_DIM = 64  # above: candidates from an exact search in this many PCA dimensions
MAX_DENSE_COMPONENT = 4000  # larger linked sets break medoid ties by id, not by centrality
# index_neighbours over the library's IVF index: lists probed and candidates per neighbour
# wanted (8-bit codes choose them; exact cosines rank them), measured in DUPLICATES.md
IVF_NPROBE = 3
IVF_CANDIDATES = 1


@dataclass(frozen=True)
class DuplicateParams:
    """Thresholds, measured in benchmarks/DUPLICATES.md."""

    neighbours: int = 10  # CLIP neighbours looked at per photo
    # Chosen on the tune half of benchmarks/duplicates_eval.py (best recall at precision
    # >= 0.995, then the tightest hash): CLIP proposes, the hash decides (a weak model put true
    # copies at cosine -0.5); crops are within 6 bits of a window, distinct photos >= 12 apart.
    near_min_cosine: float = -1.0
    near_max_hash: int = 6
    similar_seconds: float = 10.0
    similar_min_cosine: float = 0.90
    # Also pair photos whose perceptual hashes (full, or a crop window against a full one) share
    # one of 4 16-bit bands exactly (any two within 3 bits do): finds copies CLIP does not place
    # near (grey copies and crops under weak models).
    # Needs every photo's hash: fast with hashes stored at index time (phash_fn), about 10 ms
    # a photo when the default phash_fn reads the files.
    hash_candidates: bool = True
    max_band_bucket: int = 64  # larger buckets are common patterns (flat skies), not copies


@dataclass(frozen=True)
class ImageFacts:
    """What the library knows of a photo (from its row; metadata from imgsearch.exif)."""

    path: str
    size: int  # bytes
    width: int | None = None
    height: int | None = None
    taken_at: str | None = None  # ISO 8601 as stored
    camera: str | None = None  # make and model: burst shots must share it
    exif_fields: int = 0  # how many metadata fields are known: the keeper prefers more


@dataclass(frozen=True)
class Member:
    """One photo of a group and the evidence that ties it to the group's medoid."""

    id: int
    path: str
    cosine: float | None  # with the medoid (1.0 for the medoid itself)
    hash_distance: int | None  # perceptual-hash bits apart (near), 0 for exact copies
    seconds_apart: float | None  # capture times apart, when both are known


@dataclass(frozen=True)
class DuplicateGroup:
    """Photos that duplicate each other; `keeper` is the suggestion, nothing is removed."""

    kind: str
    medoid: int
    keeper: int
    members: tuple[Member, ...] = field(default=())  # keeper first, then by cosine

    def to_dict(self) -> dict[str, Any]:
        """The --json shape: keys are a contract (add, never rename)."""
        return {
            "kind": self.kind,
            "keeper": self.keeper,
            "medoid": self.medoid,
            "members": [asdict(m) for m in self.members],
        }


def find_groups(
    ids: Sequence[int],
    vectors: npt.NDArray[np.float32],
    neighbours_fn: NeighboursFn | None,
    facts: Mapping[int, ImageFacts],
    kind: str,
    *,
    params: DuplicateParams = DuplicateParams(),
    phash_fn: Callable[[int], PHash | None] | None = None,
    content_hash_fn: Callable[[int], str | None] | None = None,
) -> list[DuplicateGroup]:
    """Groups of duplicates among `ids` (row i of `vectors`, (n, d) L2-normalised, is ids[i]).

    `neighbours_fn` searches `vectors` (faiss_neighbours, or the library's ANN index; needed
    for kind near). `phash_fn(id)` / `content_hash_fn(id)` default to reading facts[id].path,
    once per photo and only for candidates.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.shape[0] != len(ids):
        raise ValueError(f"{len(ids)} ids but {vectors.shape[0]} vectors")
    row = {image_id: i for i, image_id in enumerate(ids)}
    phash = _cached(phash_fn or (lambda i: perceptual_hash(facts[i].path)))
    digest = _cached(content_hash_fn or (lambda i: content_hash(facts[i].path)))
    seconds = _cached(lambda i: _timestamp(facts[i].taken_at))

    def cosine(a: int, b: int) -> float:
        return float(vectors[row[a]] @ vectors[row[b]])

    def confirm(a: int, b: int) -> bool:
        if kind == "exact":
            return digest(a) is not None and digest(a) == digest(b)
        if kind == "near":
            return (
                cosine(a, b) >= params.near_min_cosine
                and (d := hash_distance(phash(a), phash(b))) is not None
                and d <= params.near_max_hash
            )
        apart = _apart(seconds(a), seconds(b))
        return (
            facts[a].camera is not None
            and facts[a].camera == facts[b].camera
            and apart is not None
            and apart <= params.similar_seconds
            and cosine(a, b) >= params.similar_min_cosine
        )

    if kind == "exact":
        candidates = _same_size_pairs(ids, facts)
    elif kind == "near":
        if neighbours_fn is None:
            raise ValueError("kind near needs neighbours_fn (e.g. faiss_neighbours(vectors))")
        candidates = _neighbour_pairs(ids, vectors, neighbours_fn, params)
        if params.hash_candidates:
            banded = _band_pairs(ids, phash, params.max_band_bucket, params.near_max_hash)
            candidates = sorted(set(candidates) | banded)
    else:
        candidates = _burst_pairs(ids, facts, seconds, params.similar_seconds)
    edges = [(a, b) for a, b in candidates if confirm(a, b)]
    links: dict[int, set[int]] = {}
    for a, b in edges:
        links.setdefault(a, set()).add(b)
        links.setdefault(b, set()).add(a)
    groups = []
    for component in _components(edges):
        block = vectors[[row[i] for i in component]]
        for medoid, members in _medoid_groups(component, block, links, confirm):
            group = [medoid, *members]
            evidence = {
                i: Member(
                    id=i,
                    path=facts[i].path,
                    cosine=round(cosine(medoid, i), 4),
                    hash_distance=(0 if kind == "exact" else
                                   hash_distance(phash(medoid), phash(i)) if kind == "near"
                                   else None),
                    seconds_apart=_apart(seconds(medoid), seconds(i)),
                )
                for i in group
            }  # fmt: skip
            keeper = max(group, key=lambda i: _keeper_rank(facts[i], seconds(i)))
            rest = sorted((i for i in group if i != keeper), key=lambda i: -cosine(keeper, i))
            members_out = tuple(evidence[i] for i in (keeper, *rest))
            groups.append(DuplicateGroup(kind, medoid, keeper, members_out))
    groups.sort(key=lambda g: (-len(g.members), facts[g.keeper].path))
    return groups


# --- candidates -------------------------------------------------------------------------------


def _same_size_pairs(ids: Sequence[int], facts: Mapping[int, ImageFacts]) -> list[tuple[int, int]]:
    """Byte-identical files have one size: only those are hashed, all pairs within a size."""
    by_size: dict[int, list[int]] = {}
    for i in ids:
        by_size.setdefault(facts[i].size, []).append(i)
    pairs = []
    for same in by_size.values():
        pairs += [(a, b) for n, a in enumerate(same) for b in same[n + 1 :]]
    return pairs


def _neighbour_pairs(
    ids: Sequence[int],
    vectors: npt.NDArray[np.float32],
    neighbours_fn: NeighboursFn,
    params: DuplicateParams,
) -> list[tuple[int, int]]:
    """Pairs (a < b by row) among each photo's CLIP neighbours above near_min_cosine."""
    k = min(params.neighbours + 1, len(ids))  # +1: a photo is its own first neighbour
    if k < 2:
        return []
    scores, rows = neighbours_fn(vectors, k)
    hit = (rows >= 0) & (scores >= params.near_min_cosine)
    left = np.broadcast_to(np.arange(len(ids))[:, None], rows.shape)[hit]
    right = rows[hit]
    keep = left != right
    pairs = np.unique(np.sort(np.stack([left[keep], right[keep]], axis=1), axis=1), axis=0)
    return [(ids[a], ids[b]) for a, b in pairs.tolist()]


def _band_pairs(
    ids: Sequence[int], phash: Callable[[int], PHash | None], max_bucket: int, max_hash: int
) -> set[tuple[int, int]]:
    """Pairs where one photo's full pHash, or one of its crop windows' (the other is then a
    crop of it), agrees exactly on a 16-bit band with the other's full pHash, kept when their
    hash distance is within max_hash. In numpy: 100k photos probe ~36 buckets each."""
    known = [(n, h) for n, i in enumerate(ids) if (h := phash(i)) is not None]
    if len(known) < 2:
        return set()
    width = max(len(h) for _, h in known)
    rows = np.array([n for n, _ in known], dtype=np.int64)
    signed = [[x - (1 << 64) if x >> 63 else x for x in (*h, *(h[0],) * (width - len(h)))]
              for _, h in known]  # fmt: skip
    table = np.array(signed, dtype=np.int64).view(np.uint64)  # (p, width): the same 64 bits
    left, right = [], []
    for band in range(4):
        keys = (table >> np.uint64(16 * band)) & np.uint64(0xFFFF)  # (p, width)
        order = np.argsort(keys[:, 0], kind="stable")
        full = keys[order, 0]
        probes = keys.ravel()
        lo, hi = np.searchsorted(full, probes, "left"), np.searchsorted(full, probes, "right")
        size = np.where((hi - lo) <= max_bucket, hi - lo, 0)
        owner = np.repeat(np.arange(probes.size) // width, size)
        first = np.repeat(lo - np.cumsum(size) + size, size)
        partner = order[first + np.arange(int(size.sum()))]
        keep = owner != partner
        left.append(owner[keep])
        right.append(partner[keep])
    a, b = np.concatenate(left), np.concatenate(right)
    close = np.zeros(len(a), dtype=bool)
    for s in range(0, len(a), 500_000):  # hash distances, a block of candidates at a time
        ha, hb = table[a[s : s + 500_000]], table[b[s : s + 500_000]]
        full_vs = np.bitwise_count(ha[:, :1] ^ hb).min(axis=1)
        vs_full = np.bitwise_count(ha ^ hb[:, :1]).min(axis=1)
        close[s : s + 500_000] = np.minimum(full_vs, vs_full) <= max_hash
    pairs = np.unique(np.sort(np.stack([rows[a[close]], rows[b[close]]], axis=1), axis=1), axis=0)
    return {(ids[x], ids[y]) for x, y in pairs.tolist()}


def _burst_pairs(
    ids: Sequence[int],
    facts: Mapping[int, ImageFacts],
    seconds: Callable[[int], float | None],
    window: float,
) -> list[tuple[int, int]]:
    """Pairs from one camera taken within `window` seconds (a sweep over sorted times)."""
    by_camera: dict[str, list[tuple[float, int]]] = {}
    for i in ids:
        when = seconds(i)
        if facts[i].camera is not None and when is not None:
            by_camera.setdefault(facts[i].camera, []).append((when, i))
    pairs = []
    for shots in by_camera.values():
        shots.sort()
        for n, (when, a) in enumerate(shots):
            for later, b in shots[n + 1 :]:
                if later - when > window:
                    break
                pairs.append((a, b))
    return pairs


# --- grouping ---------------------------------------------------------------------------------


def _components(edges: Iterable[tuple[int, int]]) -> list[list[int]]:
    parent: dict[int, int] = {}

    def root(x: int) -> int:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in edges:
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    out: dict[int, list[int]] = {}
    for x in parent:
        out.setdefault(root(x), []).append(x)
    return [sorted(c) for c in out.values()]


def _medoid_groups(
    component: list[int],
    block: npt.NDArray[np.float32],
    links: Mapping[int, set[int]],
    confirm: Callable[[int, int], bool],
) -> list[tuple[int, list[int]]]:
    """Split a connected component (vectors `block`, in its order) into medoid groups: the
    photo with the most confirmed links left (ties: the highest summed cosine with everyone
    left, the most central) and the photos confirmed against it directly; repeat."""
    big = len(component) > MAX_DENSE_COMPONENT
    similarity = None if big else block @ block.T
    position = {i: n for n, i in enumerate(component)}
    remaining, groups = set(component), []
    while len(remaining) >= 2:
        left = [position[i] for i in remaining]
        central = np.zeros(len(component)) if similarity is None else similarity[:, left].sum(1)
        medoid = max(remaining, key=lambda i: (len(links[i] & remaining), central[position[i]], -i))
        members = sorted(j for j in remaining if j != medoid and confirm(medoid, j))
        if not members:  # the best-linked photo has no partner left: neither has anyone
            break
        groups.append((medoid, members))
        remaining.difference_update((medoid, *members))
    return groups


def _keeper_rank(facts: ImageFacts, when: float | None) -> tuple[int, int, int, float]:
    """Larger is kept: resolution, then file size, EXIF completeness, earliest capture."""
    pixels = (facts.width or 0) * (facts.height or 0)
    return (pixels, facts.size, facts.exif_fields, -when if when is not None else -np.inf)


# --- evidence ---------------------------------------------------------------------------------


def _timestamp(taken_at: str | None) -> float | None:
    """Seconds of an ISO 8601 time; wall-clock times (no offset) are read as UTC, so two of
    them compare as the camera's clock did."""
    if not taken_at:
        return None
    try:
        when = datetime.fromisoformat(taken_at)
    except ValueError:
        return None
    if when.tzinfo is not None:  # aware: the offset is real, keep the instant
        return when.timestamp()
    return when.replace(tzinfo=timezone.utc).timestamp()


def _apart(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(abs(a - b), 3)


def _cached(fn: Callable[[int], Any]) -> Callable[[int], Any]:
    memo: dict[int, Any] = {}

    def get(i: int) -> Any:
        if i not in memo:
            memo[i] = fn(i)
        return memo[i]

    return get


def faiss_neighbours(vectors: npt.NDArray[np.float32]) -> NeighboursFn:
    """Inner-product neighbours over `vectors` with FAISS: exact up to FLAT_MAX vectors; above,
    an IVF with small cells over a PCA_DIM projection (all-pairs search is n^2 memory traffic,
    and IVF over full vectors took 45 CPU-s for 50k here), candidates re-scored with the full
    vectors. Copies are near-identical vectors, so the projection keeps them neighbours. The
    library's ANN index can replace it."""
    import faiss

    data = np.ascontiguousarray(vectors, dtype=np.float32)
    n, dim = data.shape
    if n <= FLAT_MAX or dim <= PCA_DIM:
        index = faiss.IndexFlatIP(dim)
        index.add(data)
        return lambda queries, k: index.search(np.ascontiguousarray(queries, np.float32), k)
    pca = faiss.PCAMatrix(dim, PCA_DIM)
    pca.train(data[np.random.default_rng(0).choice(n, min(n, 20_000), replace=False)])
    projected = pca.apply(data)
    faiss.normalize_L2(projected)
    nlist = int(8 * np.sqrt(n))  # small cells: a copy sits in its original's cell or the next
    index = faiss.IndexIVFFlat(
        faiss.IndexFlatIP(PCA_DIM), PCA_DIM, nlist, faiss.METRIC_INNER_PRODUCT
    )
    index.cp.niter = 10
    index.cp.min_points_per_centroid = 1  # the training sample is deliberately small
    index.train(projected[np.random.default_rng(1).choice(n, min(n, 16 * nlist), replace=False)])
    index.add(projected)
    index.nprobe = 3

    def search(queries: npt.NDArray[np.float32], k: int) -> tuple[np.ndarray, np.ndarray]:
        small = pca.apply(np.ascontiguousarray(queries, np.float32))
        faiss.normalize_L2(small)
        _, rows = index.search(small, k)
        scores = np.empty(rows.shape, np.float32)
        for start in range(0, len(rows), 8192):  # exact cosines, a block at a time
            block = rows[start : start + 8192]
            scores[start : start + 8192] = np.einsum(
                "nd,nkd->nk", queries[start : start + 8192], data[np.maximum(block, 0)]
            )
        scores[rows < 0] = -np.inf
        return scores, rows

    return search


def index_neighbours(
    index: VectorIndex, ids: npt.NDArray[np.int64], vectors: npt.NDArray[np.float32]
) -> NeighboursFn:
    """Neighbours from the library's own ANN index (imgsearch/annindex.py; its ids are row
    ids) among `ids`, as rows of `vectors` (row i is ids[i], ids ascending), scored exactly
    with `vectors`. Exact index: its own search. IVF: candidates from IVF_NPROBE lists (copies
    are near-identical vectors: they share a list or sit in the next one), re-scored."""
    import faiss

    ids = np.asarray(ids, dtype=np.int64)
    data = np.ascontiguousarray(vectors, dtype=np.float32)
    subset = len(ids) < index.ntotal
    selector = faiss.IDSelectorBatch(ids) if subset else None

    def rows_of(found: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        at = np.minimum(np.searchsorted(ids, found), len(ids) - 1)
        return np.where((found >= 0) & (ids[at] == found), at, -1)

    def search(queries: npt.NDArray[np.float32], k: int) -> tuple[np.ndarray, np.ndarray]:
        q = np.ascontiguousarray(queries, dtype=np.float32)
        if index.kind != "ivf":
            params = faiss.SearchParameters(sel=selector) if selector is not None else None
            scores, found = index.index.search(q, k, params=params)
            rows = rows_of(found)
            return np.where(rows >= 0, scores, -np.inf).astype(np.float32), rows
        params = faiss.SearchParametersIVF(sel=selector, nprobe=IVF_NPROBE)
        wanted = min(index.ntotal, IVF_CANDIDATES * k)
        scores = np.empty((len(q), k), np.float32)
        rows = np.empty((len(q), k), np.int64)
        for start in range(0, len(q), 8192):  # exact cosines, a block at a time
            block = q[start : start + 8192]
            _, found = index.index.search(block, wanted, params=params)
            cand = rows_of(found)
            exact = np.einsum("nd,nkd->nk", block, data[np.maximum(cand, 0)])
            exact[cand < 0] = -np.inf
            best = np.argsort(-exact, axis=1, kind="stable")[:, :k]
            scores[start : start + 8192] = np.take_along_axis(exact, best, 1)
            chosen = np.take_along_axis(cand, best, 1)
            rows[start : start + 8192] = np.where(np.isfinite(scores[start : start + 8192]),
                                                  chosen, -1)  # fmt: skip
        return scores, rows

    return search


__all__ = [
    "KINDS",
    "DuplicateGroup",
    "DuplicateParams",
    "ImageFacts",
    "Member",
    "PHash",
    "content_hash",
    "hash_distance",
    "faiss_neighbours",
    "find_groups",
    "index_neighbours",
    "perceptual_hash",
    "picture_hash",
]


# --- on a library -------------------------------------------------------------------------------
def library_groups(
    library: Any, kind: str, folder: str | None = None, params: IndexParams | None = None
) -> list[DuplicateGroup]:
    """Duplicate groups among a library's photos (inside `folder`, canonical, if given): the
    stored vectors, CLIP neighbours from the library's ANN index (`params`: the settings'),
    the metadata columns as facts, stored content and perceptual hashes where known (a photo
    without a stored perceptual hash is read, once, when it is a candidate)."""
    from imgsearch.paths import from_key, prefix_range
    from imgsearch.photohash import unpack

    sql = (
        "SELECT id, path, size, width, height, taken_at, taken_at_source, camera_make, "
        "camera_model, lens, latitude, content_hash, phash FROM images WHERE status = 'ok'"
    )
    args: list[Any] = []
    if folder is not None:
        low, high = prefix_range(folder)
        sql += " AND path >= ? AND path < ?"
        args += [low, high]
    with library.snapshot() as cur:
        rows = cur.execute(sql + " ORDER BY id", args).fetchall()
    facts: dict[int, ImageFacts] = {}
    hashes: dict[int, str] = {}
    phashes: dict[int, PHash] = {}
    for rid, key, size, w, h, taken, source, make, model, lens, lat, chash, stored in rows:
        known = (make, model, lens, lat)
        facts[rid] = ImageFacts(
            path=from_key(key), size=size, width=w, height=h,
            taken_at=None if source in (None, "mtime") else taken,  # a file time is no capture
            camera=" ".join(filter(None, (make, model))) or None,
            exif_fields=sum(v is not None for v in known) + (source not in (None, "mtime")),
        )  # fmt: skip
        if chash:
            hashes[rid] = chash
        if (phash := unpack(stored)) is not None:
            phashes[rid] = phash
    ids = np.fromiter(facts, dtype=np.int64, count=len(facts))
    found_ids, vectors = library.vectors_for_ids(ids) if len(ids) else (ids, np.empty((0, 0)))
    if len(found_ids) > 1 and np.any(np.diff(found_ids) < 0):  # index_neighbours: ascending
        ascending = np.argsort(found_ids, kind="stable")
        found_ids, vectors = found_ids[ascending], vectors[ascending]
    order = [int(i) for i in found_ids]
    if not order:
        return []

    def digest(i: int) -> str | None:
        return hashes.get(i) or content_hash(facts[i].path)

    def picture(i: int) -> PHash | None:
        return phashes[i] if i in phashes else perceptual_hash(facts[i].path)

    neighbours = None
    if kind != "exact":
        from imgsearch.vectors import IndexParams

        index = library.ann.current(params or IndexParams())
        neighbours = index_neighbours(index, found_ids, vectors)
    return find_groups(
        order, vectors, neighbours, facts, kind, phash_fn=picture, content_hash_fn=digest
    )
