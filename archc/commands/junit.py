"""The JUnit XML report of `archc check --format junit`: one test case per spec
and one per assertion (`-> shape` and `expect`), which CI systems display."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from archc.api import CompileResult
from archc.diagnostics import render_one, source_lines


def junit_xml(results: list[CompileResult], strict: bool) -> str:
    suite = ET.Element("testsuite", name="archc check")
    tests = failures = 0
    for r in results:
        lines = source_lines(r.text)
        assertion_spans = {(a.value_span.line, a.value_span.column): a for a in r.assertions}
        spec_problems = [
            d
            for d in r.diagnostics
            if (d.is_error or strict)
            and not (d.span and (d.span.line, d.span.column) in assertion_spans)
        ]
        case = ET.SubElement(suite, "testcase", classname="archc.check", name=r.path)
        tests += 1
        if spec_problems:
            failures += 1
            fail = ET.SubElement(case, "failure", message=spec_problems[0].message, type=spec_problems[0].code)
            fail.text = "\n".join(render_one(d, r.path, lines) for d in spec_problems)
            if r.omitted:
                fail.text += f"\n... and {r.omitted:,} more"
        for key, a in assertion_spans.items():
            target = f"{a.target}." if a.target else ""
            name = f"{r.path}:{a.span.line}: {target}{a.quantity} {a.op} {a.text}"
            # an invalid spec has no network: its file's stem is what its name defaults to
            network = r.network.name if r.network else Path(r.path).stem
            acase = ET.SubElement(suite, "testcase", classname=f"archc.expect.{network}", name=name)
            tests += 1
            failed = [d for d in r.diagnostics if d.span and (d.span.line, d.span.column) == key]
            if failed:
                failures += 1
                f = ET.SubElement(acase, "failure", message=failed[0].message, type=failed[0].code)
                f.text = render_one(failed[0], r.path, lines)
    suite.set("tests", str(tests))
    suite.set("failures", str(failures))
    suite.set("errors", "0")
    ET.indent(suite)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + xml_safe(ET.tostring(suite, encoding="unicode"))


# Characters XML 1.0 does not allow anywhere (ElementTree writes them as they are, and
# the report would not parse): C0 controls but tab, CR, LF; surrogates; U+FFFE, U+FFFF.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_safe(text: str) -> str:
    """`text` with each character XML 1.0 forbids written as its Python escape (`\\x1b`).

    >>> xml_safe("a\\x1bb\\ud800")
    'a\\\\x1bb\\\\ud800'
    """
    return _NOT_XML.sub(lambda m: repr(m.group())[1:-1], text)
