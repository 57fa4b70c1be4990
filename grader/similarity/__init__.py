"""Integrity evidence for staff: similar weights, predictions and code between submissions.

    sketch.py       a fixed random projection (CountSketch) of each tensor
    checkpoints.py  one checkpoint file -> tensors (weights_only), canonical digest, sketches
    code.py         copydetect fingerprints of a source file; the comparison, template left out
    evidence.py     one submission folder -> Evidence (checkpoints, code, predictions); bytes
    packing.py      a JSON head and arrays in one byte string, without pickle
    weights.py      cosines per tensor, whole, and of the changes from a starting point
    predictions.py  identical (wrong) answers against chance, from each model's confusion
    signals.py      Signal and Pair, flag lines, strong and weak, the ranking
    pairs.py        the numbers of one pair -> its signals and sentences
    storage.py      where evidence and pairs are kept: a small interface, a dict, SQLite
    index.py        SimilarityIndex: add(id, evidence) -> the new pairs; recompute()
    course.py       what to read of an assignment's submissions (from its spec); one zip's evidence
    fromstore.py    a `grader batch` results store as the source of evidence
    report.py       ranked pairs as text and CSV
    cli.py          `grader similarity STORE`

Nothing here imports or runs a student's code, and nothing changes a score: every signal is
evidence for a person to judge. Nothing knows the assignment's parts or splits either: the
caller names the files, checkpoint slots and prediction keys.
"""
