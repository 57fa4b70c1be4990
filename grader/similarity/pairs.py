"""Numbers about a pair -> its signals: the value, whether strong, one sentence, the details."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from grader.similarity.code import CodeMatch
from grader.similarity.predictions import Agreement
from grader.similarity.signals import FlagLines, Kind, Signal, line_of
from grader.similarity.weights import Dots

TOP_TENSORS = 3


def _num(value: float | np.ndarray, digits: int = 4) -> float | None:
    """Rounded for JSON; None for NaN or infinity (JSON has neither)."""
    return round(float(value), digits) if np.isfinite(value) else None


def _lines_text(ranges: Sequence[tuple[int, int]], limit: int = 4) -> str:
    shown = [f"{a}-{b}" if a != b else f"{a}" for a, b in ranges[:limit]]
    return ", ".join(shown) + (f" and {len(ranges) - limit} more" if len(ranges) > limit else "")


def identical(slot: str, digest: str, *, starting_point: bool, holders: int, lines: FlagLines) -> Signal:
    """Both checkpoints hold the same tensors."""
    if starting_point:
        detail = f"{slot}: both are the unchanged starting checkpoint (same tensors, SHA-256 {digest[:12]})"
    else:
        detail = f"{slot}: the same tensors (SHA-256 {digest[:12]}), whatever the file bytes"
        if holders > 2:
            detail += f"; {holders} submissions hold them"
    return Signal(
        Kind.WEIGHTS_IDENTICAL,
        slot,
        1.0,
        line_of(Kind.WEIGHTS_IDENTICAL, lines),
        strong=not starting_point,
        detail=detail,
        data={"digest": digest, "holders": holders},
    )


def weights(
    slot: str,
    keys: Sequence[str],
    sizes: np.ndarray,
    raw: Dots,
    delta: Dots | None,
    *,
    delta_from: str,
    shared_start: str,
    exact: bool,
    lines: FlagLines,
) -> list[Signal]:
    """The raw-weight signal and, with a starting point, the signal of the changes from it.

    ``raw``/``delta`` hold one pair's per-tensor dots (T,). ``shared_start`` says why the
    models share a start ("" when they are not known to): then raw weights are weak evidence.
    """
    how = "exact" if exact else "estimated from sketches"
    cosines = raw.cosines()
    varying = raw.valid
    value = float(raw.raw(sizes))
    whole = float(raw.whole())
    order = np.argsort(-(sizes * np.abs(cosines) * varying), kind="stable")[:TOP_TENSORS]
    top = ", ".join(f"{keys[t]} {cosines[t]:.4f}" for t in order if varying[t])
    detail = (
        f"{slot}: mean tensor cosine {value:.4f} (whole vector {whole:.4f}) over {int(varying.sum())} "
        f"varying tensors, {int(sizes[varying].sum()):,} values; largest: {top} ({how})"
    )
    if shared_start:
        detail += f"; weak: {shared_start}"
    signals = [
        Signal(
            Kind.WEIGHTS_RAW,
            slot,
            round(value, 6),
            line_of(Kind.WEIGHTS_RAW, lines),
            strong=not shared_start,
            detail=detail,
            data={
                "whole": _num(whole, 6),
                "exact": exact,
                "shared_start": shared_start,
                "tensors": [
                    {"key": keys[t], "size": int(sizes[t]), "cosine": _num(cosines[t], 6)}
                    for t in range(len(keys))
                    if varying[t]
                ],
            },
        )
    ]
    if delta is not None:
        change = float(delta.whole())
        shares = delta.shares()
        change_cos = delta.cosines()
        drivers = np.argsort(-shares, kind="stable")[:TOP_TENSORS]
        driven = ", ".join(
            f"{keys[t]} ({shares[t]:+.2f}, cosine {change_cos[t]:.3f})" for t in drivers if delta.valid[t]
        )
        signals.append(
            Signal(
                Kind.WEIGHTS_DELTA,
                slot,
                round(change, 6),
                line_of(Kind.WEIGHTS_DELTA, lines),
                strong=True,
                detail=(
                    f"{slot}: cosine of the changes from {delta_from} {change:.4f}; driven by {driven} "
                    f"({how if delta_from.startswith('the starting') else 'estimated from sketches'})"
                ),
                data={
                    "from": delta_from,
                    "drivers": [
                        {"key": keys[t], "share": _num(shares[t]), "cosine": _num(change_cos[t])}
                        for t in drivers
                    ],
                },
            )
        )
    return signals


def predictions(group: str, counts: Agreement, lines: FlagLines) -> list[Signal]:
    """Identical wrong answers against chance (strong with enough of them) and identical answers (weak)."""
    kappa, same, most = float(counts.kappa), int(counts.same_wrong), int(counts.most)
    items = int(counts.items)
    numbers = {
        "items": items,
        "identical": int(counts.identical),
        "same_wrong": same,
        "most": most,
        "expected": _num(counts.expected, 2),
        "z": _num(counts.z, 2),
        "ratio": _num(counts.ratio, 2),
    }
    enough = same >= lines.min_shared_errors
    wrong = (
        f"{group}: {same:,} identical wrong answers of at most {most:,} "
        f"(chance {float(counts.expected):,.1f}, {float(counts.ratio):.1f} times chance, "
        f"z {float(counts.z):.1f}): chance-corrected {kappa:.2f} "
        f"over {items:,} items"
    )
    if not enough:
        wrong += f"; weak: fewer than {lines.min_shared_errors} shared wrong answers"
    share = float(counts.share_identical)
    return [
        Signal(
            Kind.PREDICTIONS_WRONG,
            group,
            round(kappa, 4),
            line_of(Kind.PREDICTIONS_WRONG, lines),
            strong=enough,
            detail=wrong,
            data=numbers,
        ),
        Signal(
            Kind.PREDICTIONS_AGREE,
            group,
            round(share, 6),
            line_of(Kind.PREDICTIONS_AGREE, lines),
            strong=False,
            detail=f"{group}: {share:.2%} identical answers over {items:,} items",
            data=numbers,
        ),
    ]


def code(file: str, match: CodeMatch, lines: FlagLines) -> Signal:
    """copydetect's share of own code found in the other file; weak when either file is short."""
    short = min(match.own_chars) < lines.min_code_chars
    detail = (
        f"{file}: {match.shares[0]:.0%} of a's own code is in b, {match.shares[1]:.0%} of b's in a "
        f"({match.own_chars[0]:,} and {match.own_chars[1]:,} characters beyond the starter kit)"
    )
    if match.lines_a:
        detail += f"; shared lines: a {_lines_text(match.lines_a)}, b {_lines_text(match.lines_b)}"
    if short:
        detail += f"; weak: under {lines.min_code_chars} characters of own code"
    return Signal(
        Kind.CODE,
        file,
        round(match.similarity, 4),
        line_of(Kind.CODE, lines),
        strong=not short,
        detail=detail,
        data={
            "shares": [_num(s) for s in match.shares],
            "own_chars": list(match.own_chars),
            "lines_a": [list(r) for r in match.lines_a],
            "lines_b": [list(r) for r in match.lines_b],
        },
    )
