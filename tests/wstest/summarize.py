#!/usr/bin/env python3
"""Summarise an Autobahn testsuite fuzzingclient report (index.json) for tests/wstest/run.sh.

Prints the counts per behaviour and per closing behaviour, the time per case group, every case
that did not pass with its description and result, and last a line

    wstest: N cases, X OK, Y NON-STRICT, Z INFORMATIONAL, F FAILED

A case passes when its behaviour is OK, NON-STRICT or INFORMATIONAL and its closing behaviour
is OK or INFORMATIONAL (the same rule as the report's "Pass" cell plus a clean, expected
close). A case that passes is counted under its behaviour; every other case (FAILED,
UNIMPLEMENTED, a bad close, a missing case) is counted as FAILED. Exit status 0 only if
every case passed and the report holds the expected number of cases.

usage: summarize.py REPORT_DIR [--expect N]
"""

import argparse
import collections
import json
import os
import sys

PASS_BEHAVIOR = ("OK", "NON-STRICT", "INFORMATIONAL")
PASS_CLOSE = ("OK", "INFORMATIONAL")


def case_key(case_id):
    return tuple(int(p) for p in case_id.split("."))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("report_dir")
    ap.add_argument("--expect", type=int, default=None, help="number of cases the run must hold")
    args = ap.parse_args()

    index_path = os.path.join(args.report_dir, "index.json")
    try:
        with open(index_path, encoding="utf-8") as f:
            index = json.load(f)
    except (OSError, ValueError) as e:
        print("no usable report at %s: %s" % (index_path, e))
        print("wstest: 0 cases, 0 OK, 0 NON-STRICT, 0 INFORMATIONAL, %d FAILED (no report)" % (args.expect or 0))
        return 1
    if len(index) != 1:
        print("expected one agent in %s, found %s" % (index_path, sorted(index)))
    cases = {}
    for agent_cases in index.values():
        cases.update(agent_cases)

    behavior = collections.Counter(c["behavior"] for c in cases.values())
    closing = collections.Counter(c["behaviorClose"] for c in cases.values())
    print("behaviour:         " + ", ".join("%s %d" % kv for kv in sorted(behavior.items())))
    print("closing behaviour: " + ", ".join("%s %d" % kv for kv in sorted(closing.items())))

    groups = collections.OrderedDict()
    for cid in sorted(cases, key=case_key):
        g = cid.split(".")[0]
        n, ms = groups.get(g, (0, 0))
        groups[g] = (n + 1, ms + int(cases[cid].get("duration") or 0))
    print("time per group:    " + ", ".join("%s.* %d cases %.1f s" % (g, n, ms / 1000.0) for g, (n, ms) in groups.items()))

    counts = collections.Counter()
    failed = []
    for cid in sorted(cases, key=case_key):
        c = cases[cid]
        if c["behavior"] in PASS_BEHAVIOR and c["behaviorClose"] in PASS_CLOSE:
            counts[c["behavior"]] += 1
        else:
            counts["FAILED"] += 1
            failed.append(cid)

    missing = 0
    if args.expect is not None and len(cases) < args.expect:
        missing = args.expect - len(cases)
        print("MISSING: the report holds %d cases, expected %d" % (len(cases), args.expect))
    elif args.expect is not None and len(cases) > args.expect:
        print("note: the report holds %d cases, expected %d (update EXPECTED_CASES?)" % (len(cases), args.expect))

    for cid in failed:
        c = cases[cid]
        detail = {}
        try:
            with open(os.path.join(args.report_dir, c["reportfile"]), encoding="utf-8") as f:
                detail = json.load(f)
        except (OSError, ValueError, KeyError):
            pass
        print("")
        print("FAILED %s: behaviour %s, closing behaviour %s, remote close code %s (%s ms)" % (
            cid, c["behavior"], c["behaviorClose"], c.get("remoteCloseCode"), c.get("duration")))
        for label, key in (("description", "description"), ("expectation", "expectation"),
                           ("result", "result"), ("closing", "resultClose"),
                           ("remote close reason", "remoteCloseReason")):
            if detail.get(key):
                print("  %-20s %s" % (label + ":", " ".join(str(detail[key]).split())))
        print("  %-20s %s" % ("report:", os.path.join(args.report_dir, c["reportfile"].replace(".json", ".html"))))

    total = len(cases) + missing
    nfailed = counts["FAILED"] + missing
    print("")
    print("wstest: %d cases, %d OK, %d NON-STRICT, %d INFORMATIONAL, %d FAILED" % (
        total, counts["OK"], counts["NON-STRICT"], counts["INFORMATIONAL"], nfailed))
    return 0 if nfailed == 0 and total > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
