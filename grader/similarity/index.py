"""The similarity index: every submission's evidence in memory, new ones compared with all others.

``add(id, evidence)`` compares ONE new submission with every other in two stages:

1. cheap, vectorised over all others at once: identical digests by hash lookup; sketch
   cosines against the stacked sketches of the same architecture (and the cohort's sum,
   for the changes from the cohort mean); prediction agreement against the stacked
   predictions of each split; shared code fingerprints from an inverted index;
2. for the candidates whose cheap score reaches the floor (at most ``max_pairs``): the full
   signals, with copydetect's comparison of the code (shared line ranges, passages that
   more than ``common_share`` of the course has left out) and, when a ``TensorLoader`` is
   given, exact cosines of the full tensors for the pairs a strong weight signal flags by
   its estimate (at most ``exact_top``).

The pairs of the new submission replace its old ones in the storage; ``recompute()`` does
the same for every submission against those before it, so it gives every pair once. Pairs
found by ``add`` use the cohort as it was then; ``recompute()`` brings them all up to date.

Submissions of the same owner (one student's uploads) are never paired.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np

from grader.similarity import code as codesim
from grader.similarity import pairs as build
from grader.similarity import predictions as agreement
from grader.similarity.checkpoints import digest_of, float_arrays
from grader.similarity.evidence import Evidence
from grader.similarity.signals import WEAK, FlagLines, Pair, Signal, evidence, make_pair, ranked
from grader.similarity.sketch import DIM
from grader.similarity.storage import Storage
from grader.similarity.weights import (
    Cohort,
    Dots,
    exact_pair,
    match_reference,
    one_vs_many,
    reference_sketches,
)

log = logging.getLogger(__name__)

TensorLoader = Callable[[str, str], Mapping[str, np.ndarray] | None]  # (id, slot) -> float arrays by key
SHARED_MEDIAN = 0.5  # median raw cosine with the others above this: the architecture has a shared start


@dataclass(frozen=True)
class Reference:
    """A known starting checkpoint of a slot (e.g. the pretrained backbone), for the changes from it."""

    digest: str  # checkpoints.digest_of: a submission holding exactly it is unchanged
    tensors: Mapping[str, np.ndarray]  # checkpoints.float_arrays of it

    @classmethod
    def of(cls, tensors: Mapping[str, object]) -> Reference:
        """The reference of a loaded state_dict (name -> torch.Tensor)."""
        return cls(digest_of(tensors), float_arrays(tensors))


@dataclass(frozen=True)
class Config:
    """What the index compares with: labels, the starter kit, starting checkpoints, flag lines."""

    labels: Mapping[str, np.ndarray] = field(default_factory=dict)  # by predictions key
    classes: Mapping[str, int] = field(default_factory=dict)  # by predictions key; default max label + 1
    template: Mapping[str, str] = field(default_factory=dict)  # file name -> the starter kit's text
    references: Mapping[str, Reference] = field(default_factory=dict)  # by checkpoint slot
    shared_start: Mapping[str, bool] = field(default_factory=dict)  # slot -> known to share a start
    lines: FlagLines = field(default_factory=FlagLines)
    exact_top: int = 5
    max_pairs: int = 50
    common_share: float = 0.05  # code in more than this share of submissions (and ...
    common_min: int = 10  # ... more than this many) is common, not counted
    min_cohort: int = 8  # other submissions of an architecture needed for a cohort mean or median


# --------------------------------------------------------------------------- in-memory parts


class _Arch:
    """The sketches of every submission of one architecture in one slot, stacked."""

    def __init__(self, keys: tuple[str, ...], sizes: np.ndarray) -> None:
        self.keys, self.sizes = keys, sizes
        self.rows = np.zeros(8, dtype=np.int64)
        self.sketches = np.zeros((8, len(keys), DIM), dtype=np.float32)
        self.count = 0
        self.total = np.zeros((len(keys), DIM), dtype=np.float64)
        self.position: dict[int, int] = {}

    def add(self, row: int, sketches: np.ndarray) -> None:
        if self.count == len(self.rows):
            self.rows = np.concatenate([self.rows, np.zeros_like(self.rows)])
            self.sketches = np.concatenate([self.sketches, np.zeros_like(self.sketches)])
        self.rows[self.count], self.sketches[self.count] = row, sketches
        self.position[row] = self.count
        self.count += 1
        self.total += sketches

    def remove(self, row: int) -> None:
        at = self.position.pop(row)
        self.total -= self.sketches[at]
        last = self.count - 1
        if at != last:  # move the last member into the gap
            self.rows[at], self.sketches[at] = self.rows[last], self.sketches[last]
            self.position[int(self.rows[at])] = at
        self.count = last


class _Slot:
    def __init__(self) -> None:
        self.digests: dict[str, set[int]] = {}
        self.archs: dict[str, _Arch] = {}


class _Split:
    """The predictions of every submission on one split (one row per submission; -1: none)."""

    def __init__(self, labels: np.ndarray, classes: int) -> None:
        self.labels, self.classes = labels.astype(np.int64), classes
        dtype = np.int8 if classes <= 127 else np.int32
        self.predicted = np.full((8, len(labels)), -1, dtype=dtype)
        self.confusion = np.zeros((8, classes, classes), dtype=np.float32)
        self.wrong = np.zeros(8, dtype=np.int64)
        self.has = np.zeros(8, dtype=bool)

    def grow(self, rows: int) -> None:
        if rows <= len(self.has):
            return
        size = max(rows, 2 * len(self.has))
        pad = size - len(self.has)
        self.predicted = np.concatenate(
            [self.predicted, np.full((pad, len(self.labels)), -1, self.predicted.dtype)]
        )
        self.confusion = np.concatenate(
            [self.confusion, np.zeros((pad, self.classes, self.classes), np.float32)]
        )
        self.wrong = np.concatenate([self.wrong, np.zeros(pad, np.int64)])
        self.has = np.concatenate([self.has, np.zeros(pad, bool)])

    def usable(self, values: np.ndarray) -> bool:
        return (
            values.shape == self.labels.shape
            and values.dtype.kind in "iu"
            and (not values.size or (values.min() >= 0 and values.max() < self.classes))
        )

    def add(self, row: int, values: np.ndarray) -> None:
        self.grow(row + 1)
        self.predicted[row] = values
        self.confusion[row] = agreement.confusion(values.astype(np.int64), self.labels, self.classes)
        self.wrong[row] = int((values != self.labels).sum())
        self.has[row] = True


class _Code:
    """One source file of every submission: its own (non-template) fingerprints, who has each,
    and in how many living submissions each occurs (passages most of a course shares are
    idioms, not copying: MOSS ignores them too)."""

    def __init__(self, template: str | None, file: str) -> None:
        fps = [codesim.fingerprint(file, template)] if template else []
        self.template = codesim.boilerplate(fps)
        self.own: dict[int, np.ndarray] = {}
        self.postings: dict[int, list[int]] = {}
        self.count: dict[int, int] = {}
        self.alive = 0

    def add(self, row: int, fp: codesim.CodeFingerprint) -> None:
        own = codesim.own_hashes(fp, self.template)
        self.own[row] = own
        self.alive += 1
        for value in own.tolist():
            self.postings.setdefault(value, []).append(row)
            self.count[value] = self.count.get(value, 0) + 1

    def remove(self, row: int) -> None:
        for value in self.own.get(row, np.zeros(0, np.int64)).tolist():
            self.count[value] -= 1
        self.own[row] = np.zeros(0, dtype=np.int64)
        self.alive -= 1

    def common_limit(self, share: float, minimum: int) -> int:
        """A fingerprint in more living submissions than this is common code, ignored."""
        return max(minimum, math.ceil(share * self.alive))

    def common(self, rows: tuple[int, ...], limit: int) -> np.ndarray:
        """The common fingerprints among those of ``rows`` (sorted)."""
        values = np.unique(np.concatenate([self.own.get(r, np.zeros(0, np.int64)) for r in rows]))
        return values[np.array([self.count.get(v, 0) > limit for v in values.tolist()], dtype=bool)]

    def shared(self, row: int, rows: int, limit: int) -> np.ndarray:
        """How many of ``row``'s own, not common fingerprints it shares with every row (dead rows too)."""
        lists = [self.postings[v] for v in self.own[row].tolist() if self.count.get(v, 0) <= limit]
        if not lists:
            return np.zeros(rows, dtype=np.int64)
        return np.bincount(np.concatenate([np.asarray(x, dtype=np.int64) for x in lists]), minlength=rows)


@dataclass
class _Row:
    sid: str
    owner: str
    evidence: Evidence
    alive: bool = True


@dataclass
class _SlotNumbers:
    """Stage 1's numbers of one checkpoint slot against the others (arrays over the others)."""

    same_digest: np.ndarray
    arch: _Arch | None = None  # None: no other submission of this architecture
    arch_id: str = ""
    member_index: dict[int, int] = field(default_factory=dict)  # other row -> index into raw/delta
    raw: Dots | None = None
    delta: Dots | None = None
    raw_value: np.ndarray | None = None
    delta_value: np.ndarray | None = None
    shared: str = ""  # why the models share a start ("" if not known to)
    delta_from: str = ""


@dataclass
class _Cheap:
    """What stage 1 found for the others: evidence per signal, and the numbers stage 2 reuses."""

    others: np.ndarray  # rows
    score: np.ndarray  # (M,)
    weights: dict[str, _SlotNumbers] = field(default_factory=dict)
    groups: dict[str, agreement.Agreement] = field(default_factory=dict)
    group_has: dict[str, np.ndarray] = field(default_factory=dict)

    def raise_to(self, values: np.ndarray) -> None:
        np.maximum(self.score, np.nan_to_num(values, nan=0.0), out=self.score)


# --------------------------------------------------------------------------- the index


class SimilarityIndex:
    """Evidence of every submission of one assignment, and the pairs worth a look."""

    def __init__(
        self, storage: Storage, config: Config | None = None, *, tensors: TensorLoader | None = None
    ) -> None:
        self.storage = storage
        self.config = config or Config()
        self.tensors = tensors
        self._rows: list[_Row] = []
        self._row_of: dict[str, int] = {}
        self._slots: dict[str, _Slot] = {}
        self._splits: dict[str, _Split] = {}
        self._code: dict[str, _Code] = {}
        self._matched: dict[tuple[str, str], tuple[list[np.ndarray | None], np.ndarray]] = {}
        for sid, owner, found in storage.load():
            self._insert(sid, owner, found)

    def __len__(self) -> int:
        return len(self._row_of)

    def __contains__(self, sid: object) -> bool:
        return sid in self._row_of

    def submissions(self) -> Iterator[tuple[str, Evidence]]:
        """Every submission's id and evidence, in the order they were added."""
        for sid, row in self._row_of.items():
            yield sid, self._rows[row].evidence

    # ---- changing

    def add(self, sid: str, found: Evidence, *, owner: str = "", tag: str = "") -> list[Pair]:
        """Keep a submission's evidence; its pairs with every other at or above the floor, ranked."""
        if sid in self._row_of:
            self._remove(sid)
        self.storage.put(sid, owner or sid, found, tag=tag)
        row = self._insert(sid, owner or sid, found)
        found_pairs = self._compare(row, self._alive_rows(exclude=row))
        self.storage.put_pairs(sid, found_pairs)
        return ranked(found_pairs)

    def remove(self, sid: str) -> None:
        """Forget a submission and its pairs."""
        if sid in self._row_of:
            self._remove(sid)
        self.storage.delete(sid)

    def recompute(self) -> list[Pair]:
        """Every pair again, against the current cohort; replaces the stored pairs."""
        alive = self._alive_rows()
        found: list[Pair] = []
        for i, row in enumerate(alive.tolist()):
            if i:
                found.extend(self._compare(row, alive[:i]))
        self.storage.replace_pairs(found)
        return ranked(found)

    def pairs(self, top: int | None = None) -> list[Pair]:
        """The stored pairs, ranked."""
        return ranked(self.storage.pairs())[:top]

    # ---- bookkeeping

    def _alive_rows(self, exclude: int = -1) -> np.ndarray:
        return np.array([self._row_of[s] for s in self._row_of if self._row_of[s] != exclude], dtype=np.int64)

    def _split(self, key: str) -> _Split | None:
        if key not in self._splits:
            labels = self.config.labels.get(key)
            if labels is None:
                return None
            classes = self.config.classes.get(key) or (int(labels.max()) + 1 if labels.size else 1)
            self._splits[key] = _Split(np.asarray(labels), classes)
        return self._splits[key]

    def _insert(self, sid: str, owner: str, found: Evidence) -> int:
        row = len(self._rows)
        self._rows.append(_Row(sid, owner, found))
        self._row_of[sid] = row
        for slot, ck in found.checkpoints.items():
            entry = self._slots.setdefault(slot, _Slot())
            entry.digests.setdefault(ck.digest, set()).add(row)
            arch = entry.archs.get(ck.arch)
            if arch is None:
                arch = entry.archs[ck.arch] = _Arch(ck.keys, ck.sizes)
            arch.add(row, ck.sketches)
        for key, values in found.predictions.items():
            split = self._split(key)
            if split is not None and split.usable(np.asarray(values)):
                split.add(row, np.asarray(values))
        for file, fp in found.code.items():
            if file not in self._code:
                self._code[file] = _Code(self.config.template.get(file), file)
            self._code[file].add(row, fp)
        return row

    def _remove(self, sid: str) -> None:
        row = self._row_of.pop(sid)
        entry = self._rows[row]
        entry.alive = False
        for slot, ck in entry.evidence.checkpoints.items():
            self._slots[slot].digests[ck.digest].discard(row)
            self._slots[slot].archs[ck.arch].remove(row)
        for split in self._splits.values():
            split.grow(row + 1)
            split.has[row] = False
        for file in entry.evidence.code:
            self._code[file].remove(row)

    # ---- comparing one submission with others

    def _compare(self, row: int, others: np.ndarray) -> list[Pair]:
        me = self._rows[row]
        owners = np.array([self._rows[o].owner for o in others.tolist()], dtype=object)
        others = others[owners != me.owner] if len(others) else others
        if not len(others):
            return []
        cheap = _Cheap(others=others, score=np.zeros(len(others)))
        self._cheap_weights(row, cheap)
        self._cheap_predictions(row, cheap)
        self._cheap_code(row, cheap)
        floor = self.config.lines.floor
        order = np.argsort(-cheap.score, kind="stable")
        chosen = [int(i) for i in order[: self.config.max_pairs] if cheap.score[i] >= floor]
        exact = self._exact_candidates(cheap, chosen)
        found = []
        for i in chosen:
            built = self._pair(row, int(others[i]), i, cheap, exact)
            if built.score >= floor:
                found.append(built)
        return found

    def _cheap_weights(self, row: int, cheap: _Cheap) -> None:
        lines = self.config.lines
        position = {int(o): i for i, o in enumerate(cheap.others.tolist())}
        for slot, ck in self._rows[row].evidence.checkpoints.items():
            entry = self._slots[slot]
            same_digest = np.array(
                [int(o) in entry.digests.get(ck.digest, ()) for o in cheap.others.tolist()]
            )
            cheap.raise_to(np.where(same_digest, 1.0, 0.0))
            arch = entry.archs[ck.arch]
            members = arch.rows[: arch.count]
            keep = members != row
            members, stacked = members[keep], arch.sketches[: arch.count][keep]
            if not len(members):
                cheap.weights[slot] = _SlotNumbers(same_digest)
                continue
            reference = self.config.references.get(slot)
            ref_rows = self._reference(slot, ck.arch, arch)[1] if reference is not None else None
            cohort = (
                Cohort(arch.total, arch.count)
                if reference is None and arch.count - 2 >= self.config.min_cohort
                else None
            )
            raw, delta = one_vs_many(ck.sketches, stacked, reference=ref_rows, cohort=cohort)
            raw_values = raw.raw(ck.sizes)
            shared = self._shared_start(slot, raw_values)
            at = np.array([position.get(int(m), -1) for m in members.tolist()])
            here = at >= 0
            raw_full = np.full(len(cheap.others), np.nan)
            raw_full[at[here]] = raw_values[here]
            factor = WEAK if shared else 1.0
            cheap.raise_to(evidence(raw_full, lines.weights_raw) * factor)
            delta_full = np.full(len(cheap.others), np.nan)
            if delta is not None:
                delta_full[at[here]] = delta.whole()[here]
                cheap.raise_to(evidence(delta_full, lines.weights_delta))
            cheap.weights[slot] = _SlotNumbers(
                same_digest, arch, ck.arch, {int(r): j for j, r in enumerate(members.tolist())}, raw, delta,
                raw_full, delta_full, shared,
                delta_from=("the starting checkpoint" if reference is not None
                            else f"the mean of the {arch.count - 2} other submissions" if cohort else ""),
            )

    def _reference(self, slot: str, arch_id: str, arch: _Arch) -> tuple[list[np.ndarray | None], np.ndarray]:
        """The slot's starting tensors matched to an architecture's keys, and their sketches (cached)."""
        key = (slot, arch_id)
        if key not in self._matched:
            matched = match_reference(self.config.references[slot].tensors, arch.keys, arch.sizes.tolist())
            self._matched[key] = (matched, reference_sketches(matched, arch.keys))
        return self._matched[key]

    def _shared_start(self, slot: str, raw_values: np.ndarray) -> str:
        """Why this slot's models share a start ("" if not known to): given, or the cohort says so."""
        if slot in self.config.references or self.config.shared_start.get(slot):
            return "the models share a known starting checkpoint"
        finite = raw_values[np.isfinite(raw_values)]
        if len(finite) >= self.config.min_cohort and (median := float(np.median(finite))) > SHARED_MEDIAN:
            return (
                f"submissions of this architecture share a start (median cosine with the others {median:.2f})"
            )
        return ""

    def _cheap_predictions(self, row: int, cheap: _Cheap) -> None:
        lines = self.config.lines
        by_group: dict[str, list[agreement.Agreement]] = {}
        has_group: dict[str, np.ndarray] = {}
        for key, split in self._splits.items():
            if not (row < len(split.has) and split.has[row]):
                continue
            split.grow(int(cheap.others.max()) + 1)
            has = split.has[cheap.others]
            counts = agreement.one_vs_many(
                split.predicted[row].astype(np.int64),
                split.confusion[row],
                split.predicted[cheap.others],
                split.confusion[cheap.others],
                split.wrong[cheap.others],
                split.labels,
            )
            counts = agreement.Agreement(
                *(
                    np.where(has, getattr(counts, f), 0)
                    for f in ("items", "identical", "same_wrong", "expected", "variance", "most")
                )
            )
            group = agreement.group_of(key)
            by_group.setdefault(group, []).append(counts)
            has_group[group] = has_group.get(group, np.zeros(len(cheap.others), bool)) | has
        for group, parts in by_group.items():
            total = agreement.total(parts)
            assert total is not None
            counts = total
            cheap.groups[group], cheap.group_has[group] = counts, has_group[group]
            strong = np.where(counts.same_wrong >= lines.min_shared_errors, 1.0, WEAK)
            cheap.raise_to(
                np.where(has_group[group], evidence(counts.kappa, lines.predictions_wrong) * strong, 0)
            )
            cheap.raise_to(
                np.where(
                    has_group[group], evidence(counts.share_identical, lines.predictions_agree) * WEAK, 0
                )
            )

    def _cheap_code(self, row: int, cheap: _Cheap) -> None:
        for index in self._code.values():
            if row not in index.own or not len(index.own[row]):
                continue
            limit = index.common_limit(self.config.common_share, self.config.common_min)
            shared = index.shared(row, len(self._rows), limit)[cheap.others]
            mine = len(index.own[row])
            theirs = np.array([len(index.own.get(int(o), ())) for o in cheap.others.tolist()])
            with np.errstate(invalid="ignore", divide="ignore"):
                estimate = np.where(
                    theirs > 0, np.maximum(shared / mine, shared / np.maximum(theirs, 1)), 0.0
                )
            cheap.raise_to(evidence(estimate, self.config.lines.code))

    def _exact_candidates(self, cheap: _Cheap, chosen: list[int]) -> dict[str, set[int]]:
        """Per slot, the candidates (indices into the others) whose weights get exact cosines: those
        a strong weight signal flags by its estimate, not already identical, at most ``exact_top``.

        Loading full tensors costs (a ResNet-18 is 45 MB), so it is spent where a person will look.
        """
        if self.tensors is None or self.config.exact_top <= 0:
            return {}
        lines = self.config.lines
        picked: dict[str, set[int]] = {}
        for slot, found in cheap.weights.items():
            if found.raw_value is None or found.delta_value is None:
                continue
            raw = found.raw_value if not found.shared else np.full_like(found.raw_value, np.nan)
            over = np.fmax(raw - lines.weights_raw, found.delta_value - lines.weights_delta)
            over = np.where(found.same_digest, np.nan, over)
            flagged = [i for i in chosen if over[i] >= 0]
            picked[slot] = set(sorted(flagged, key=lambda i: -over[i])[: self.config.exact_top])
        return picked

    # ---- one pair's signals

    def _pair(self, row: int, other: int, i: int, cheap: _Cheap, exact: dict[str, set[int]]) -> Pair:
        me, them = self._rows[row], self._rows[other]
        swap = them.sid < me.sid  # signals are written for a < b
        first, second = (them, me) if swap else (me, them)
        lines = self.config.lines
        signals: list[Signal] = []
        for slot, found in cheap.weights.items():
            ck = me.evidence.checkpoints[slot]
            if found.same_digest[i]:
                reference = self.config.references.get(slot)
                signals.append(
                    build.identical(
                        slot,
                        ck.digest,
                        starting_point=reference is not None and reference.digest == ck.digest,
                        holders=len(self._slots[slot].digests[ck.digest]),
                        lines=lines,
                    )
                )
            if found.raw_value is None or not np.isfinite(found.raw_value[i]):
                continue
            signals.extend(
                self._weight_signals(slot, found, me.sid, them.sid, other, i in exact.get(slot, ()))
            )
        for group, counts in cheap.groups.items():
            if cheap.group_has[group][i]:
                signals.extend(build.predictions(group, counts.at(i), lines))
        for file, index in self._code.items():
            a_fp, b_fp = first.evidence.code.get(file), second.evidence.code.get(file)
            if (
                a_fp is not None
                and b_fp is not None
                and len(index.own.get(row, ()))
                and len(index.own.get(other, ()))
            ):
                limit = index.common_limit(self.config.common_share, self.config.common_min)
                ignored = np.union1d(index.template, index.common((row, other), limit))
                signals.append(build.code(file, codesim.compare(a_fp, b_fp, ignored), lines))
        return make_pair(first.sid, second.sid, signals)

    def _weight_signals(
        self, slot: str, found: _SlotNumbers, sid: str, other_sid: str, other: int, exact: bool
    ) -> list[Signal]:
        arch = found.arch
        assert arch is not None
        assert found.raw is not None
        m = found.member_index[other]

        def one(dots: Dots) -> Dots:  # one pair's (T,) out of (1 or M, T)
            return Dots(*(x[0] if x.shape[0] == 1 else x[m] for x in (dots.dot, dots.na, dots.nb)))

        raw = one(found.raw)
        delta = one(found.delta) if found.delta is not None else None
        if exact:
            loaded = self._exact(slot, found.arch_id, sid, other_sid, arch)
            if loaded is None:
                exact = False
            else:
                raw, exact_delta = loaded
                delta = exact_delta or delta
        if delta is not None and not np.isfinite(delta.whole()):
            delta = None
        return build.weights(
            slot,
            arch.keys,
            arch.sizes,
            raw,
            delta,
            delta_from=found.delta_from,
            shared_start=found.shared,
            exact=exact,
            lines=self.config.lines,
        )

    def _exact(
        self, slot: str, arch_id: str, sid: str, other_sid: str, arch: _Arch
    ) -> tuple[Dots, Dots | None] | None:
        assert self.tensors is not None
        a, b = self.tensors(sid, slot), self.tensors(other_sid, slot)
        if a is None or b is None or any(k not in a or k not in b for k in arch.keys):
            return None
        matched = self._reference(slot, arch_id, arch)[0] if slot in self.config.references else None
        return exact_pair(a, b, arch.keys, matched)
