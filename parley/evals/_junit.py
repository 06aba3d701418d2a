"""`--junit FILE`: an evaluation as JUnit XML, the format every CI reads (Jenkins, GitLab, GitHub Actions'
reporters): one <testsuite> per suite (and compared side), one <testcase> per scenario run (each repeat its own);
a failed run is a <failure> listing its failed expectations, a run that broke an <error>, an interrupted one
<skipped>. Text from models and tools is stripped of the characters XML 1.0 cannot carry."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

from ..tools import write_atomically

__all__ = ["junit_xml", "write_junit"]

_NOT_XML = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
MAX_TEXT = 20_000


def _clean(text: object, limit: int = MAX_TEXT) -> str:
    return _NOT_XML.sub("\ufffd", str(text))[:limit]


def _suite_name(record: dict[str, Any]) -> str:
    return record["suite"] + (f" [{record['variant']}]" if record.get("variant") else "")


def _case(record: dict[str, Any]) -> ET.Element:
    case = ET.Element(
        "testcase",
        name=_clean(f"{record['scenario']} (run {record['repeat']})", 500),
        classname=_clean(_suite_name(record), 500),
        time=f"{float(record.get('latency_s') or 0):.3f}",
    )
    if record["status"] == "interrupted":
        ET.SubElement(case, "skipped", message="the evaluation was stopped before this run finished")
    else:
        _verdict(case, record)
    out = [
        f"stop: {record.get('stop_reason') or '-'} · turns: {record.get('turns', 0)} · "
        f"tokens: {record.get('total_tokens', 0)} · run id: {record.get('run_id') or '-'}"
    ]
    out += [f"human: {line}" for line in cast(list[str], record.get("human") or [])]
    ET.SubElement(case, "system-out").text = _clean("\n".join(out))
    return case


def _verdict(case: ET.Element, record: dict[str, Any]) -> None:
    """A finished run's <error> (it broke) and <failure> (its failed expectations)."""
    if record["status"] == "error":
        detail = str(record.get("error") or record.get("detail") or "the run failed")
        ET.SubElement(case, "error", message=_clean(detail, 1000), type="error").text = _clean(detail)
    failed = [e for e in record.get("expectations", []) if e.get("outcome") == "failed"]
    if failed:
        failure = ET.SubElement(
            case,
            "failure",
            message=_clean("failed: " + ", ".join(e["kind"] for e in failed), 1000),
            type="expectations",
        )
        failure.text = _clean("\n".join(_expectation(e) for e in failed))
    elif record["status"] == "done" and not record["passed"]:
        ET.SubElement(case, "failure", message="the run did not pass", type="expectations")


def _expectation(e: dict[str, Any]) -> str:
    lines = [
        f"{e['kind']}: {json.dumps(e.get('value'), ensure_ascii=False, default=str)} — {e.get('message', '')}"
    ]
    lines += [f"  {item}" for item in cast(list[Any], e.get("evidence") or [])]
    return "\n".join(lines)


def _counts(element: ET.Element, cases: Sequence[ET.Element]) -> None:
    element.set("tests", str(len(cases)))
    element.set("failures", str(sum(c.find("failure") is not None for c in cases)))
    element.set("errors", str(sum(c.find("error") is not None for c in cases)))
    element.set("skipped", str(sum(c.find("skipped") is not None for c in cases)))
    element.set("time", f"{sum(float(c.get('time') or 0) for c in cases):.3f}")


def junit_xml(records: Sequence[dict[str, Any]], *, title: str) -> bytes:
    """The records as a JUnit XML document (<testsuites>)."""
    root = ET.Element("testsuites", name=_clean(title, 500))
    by_suite: dict[str, list[ET.Element]] = defaultdict(list)
    for r in records:
        by_suite[_suite_name(r)].append(_case(r))
    everything: list[ET.Element] = []
    for index, (name, cases) in enumerate(by_suite.items()):
        suite = ET.SubElement(root, "testsuite", name=_clean(name, 500), id=str(index))
        _counts(suite, cases)
        suite.extend(cases)
        everything += cases
    _counts(root, everything)
    root.attrib.pop("skipped")  # not an attribute of <testsuites> in the JUnit schema
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def write_junit(path: Path, records: Sequence[dict[str, Any]], *, title: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, junit_xml(records, title=title))
    return path
