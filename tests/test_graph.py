"""`archc graph`: DOT structure (always), SVG/PNG through Graphviz (when `dot` is installed)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import SPECS

import archc
from archc.cli import main
from archc.tools.graph import quote, to_dot

HAS_DOT = shutil.which("dot") is not None

SPEC = """\
network Mini
input 16x16x8
block Basic(K, S=1) {
  residual {
    conv K=K F=3 S=S P=1
    relu
  } shortcut {
    conv K=K F=1 S=S
  }
  relu
}
block Fire(SQ, E) {
  conv K=SQ F=1
  concat {
    branch { conv K=E F=1 }
    branch { conv K=E F=3 P=1 }
    branch { identity }
  }
}
stem: conv K=8 F=3 P=1
layer1: repeat 2 { residual { conv K=8 F=3 P=1 } }
layer2: Basic K=16 S=2
fire: Fire SQ=4 E=8
fc 10
"""


@pytest.fixture(scope="module")
def net() -> archc.Network:
    return archc.loads(SPEC, "mini.arch")


def node_ids(dot: str) -> list[str]:
    return re.findall(r'^\s*"([^"]+)" \[label=', dot, flags=re.M)


def edges(dot: str) -> list[tuple[str, str, str]]:
    return re.findall(r'^\s*"([^"]+)" -> "([^"]+)"(.*);$', dot, flags=re.M)


def test_a_box_per_layer_and_an_edge_per_input(net: archc.Network) -> None:
    dot = to_dot(net, fold=False)
    assert sorted(node_ids(dot)) == sorted(["input", *(n.name for n in net.graph.nodes)])
    wanted = sorted((src, n.name) for n in net.graph.nodes for src in n.inputs)
    assert sorted((a, b) for a, b, _ in edges(dot)) == wanted
    assert "rankdir=TB" in dot


def test_residuals_branch(net: archc.Network) -> None:
    dot = to_dot(net, fold=False)
    into_add = [(a, extra) for a, b, extra in edges(dot) if b == "layer1.0.residual1"]
    # the body's end and the identity shortcut (the copy's input), dashed
    assert into_add == [("layer1.0.conv1", ""), ("stem", into_add[1][1])]
    assert "dashed" in into_add[1][1]
    projection = [a for a, b, _ in edges(dot) if b == "layer2.residual1"]
    assert projection == ["layer2.relu1", "layer2.conv2"]
    assert [b for a, b, _ in edges(dot) if a == "layer1.1.residual1"] == ["layer2.conv1", "layer2.conv2"]


def test_concat_has_one_edge_per_branch(net: archc.Network) -> None:
    dot = to_dot(net)
    assert sorted(a for a, b, _ in edges(dot) if b == "fire.concat1") == [
        "fire.conv2",
        "fire.conv3",
        "fire.identity1",
    ]
    # every branch starts at the squeeze conv
    assert sorted(b for a, b, _ in edges(dot) if a == "fire.conv1") == sorted(
        ["fire.conv2", "fire.conv3", "fire.identity1"]
    )


def test_clusters_for_block_instances(net: archc.Network) -> None:
    dot = to_dot(net, fold=False)
    labels = re.findall(r"subgraph cluster_\d+ \{\n\s*label=<<B>([^<]*)</B>>", dot)
    assert labels == [
        "layer1: repeat x2",
        "layer1.0: copy",
        "layer1.1: copy",
        "layer2: Basic K=16 S=2",
        "fire: Fire SQ=4 E=8",
    ]
    # layer2's nodes sit inside its cluster: between its opening and the next cluster
    start = dot.index("layer2: Basic")
    end = dot.index("subgraph", start)
    assert all(f'"{n.name}" [' in dot[start:end] for n in net.graph.nodes if n.scope == "layer2")
    assert '"stem" [' not in dot[start:end]


def test_labels_show_kind_shape_and_params(net: archc.Network) -> None:
    dot = to_dot(net)
    stem = next(line for line in dot.splitlines() if line.strip().startswith('"stem" ['))
    assert "<B>stem</B>" in stem and "conv K=8 F=3 P=1" in stem
    assert "16x16x8" in stem and f"{(3 * 3 * 8 + 1) * 8:,} params" in stem


def test_collapse_draws_instances_as_boxes(net: archc.Network) -> None:
    dot = to_dot(net, collapse=True)
    ids = node_ids(dot)
    assert {"layer1.0", "layer1.1", "layer2", "fire", "stem", "fc1"} <= set(ids)
    assert not any(i.startswith(("layer2.", "fire.")) for i in ids)
    pairs = [(a, b) for a, b, _ in edges(dot)]
    assert pairs == [("input", "stem"), ("stem", "layer1.0"), ("layer1.0", "layer1.1"),
                     ("layer1.1", "layer2"), ("layer2", "fire"), ("fire", "fc1")]  # fmt: skip
    assert "layer1: repeat x2" in dot  # the repeat stays a cluster around its copies


def test_escaping() -> None:
    assert quote('a"b\\c\nd') == '"a\\"b\\\\c\\nd"'
    net = archc.loads('input 4\nfc 3\n', 'we<ird>&"name.arch')
    dot = to_dot(net)
    assert "we_ird___name" in dot  # the network name is sanitised from the file stem
    assert "<ird>" not in dot


def test_every_spec_draws() -> None:
    for path in sorted(SPECS.glob("*.arch")):
        net = archc.load(path)
        dot = to_dot(net, fold=False)
        assert len(node_ids(dot)) == len(net.graph.nodes) + 1, path
        assert len(node_ids(to_dot(net))) <= len(net.graph.nodes) + 1, path


def test_activations_fold_into_the_layer_before(net: archc.Network) -> None:
    dot = to_dot(net)
    ids = node_ids(dot)
    # layer2's body: conv then relu, one box; the relu after the residual's sum keeps its own
    body = next(line for line in dot.splitlines() if line.strip().startswith('"layer2.conv1" ['))
    assert "conv K=16 F=3 S=2 P=1 + relu" in body and 'tooltip="layer2.conv1 + layer2.relu1"' in body
    assert "layer2.relu1" not in ids and "layer2.relu2" in ids
    pairs = [(a, b) for a, b, _ in edges(dot)]
    assert ("layer2.conv1", "layer2.residual1") in pairs  # the folded relu's reader reads the box
    assert ("layer2.residual1", "layer2.relu2") in pairs
    # `--all` draws every layer
    assert "layer2.relu1" in node_ids(to_dot(net, fold=False))


def test_an_activation_whose_input_has_other_readers_keeps_its_box() -> None:
    spec = "input 8x8x4\nc: conv K=4 F=3 P=1\nconcat {\n  branch { relu }\n  branch { identity }\n}\n"
    dot = to_dot(archc.loads(spec, "fork.arch"))
    assert "relu1" in node_ids(dot)  # c is read by relu and by identity: relu is a box of its own


def test_rankdir(net: archc.Network, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert "rankdir=LR;" in to_dot(net, rankdir="LR")
    with pytest.raises(ValueError):
        to_dot(net, rankdir="XY")
    spec = tmp_path / "mini.arch"
    spec.write_text(SPEC)
    assert main(["graph", str(spec), "--rankdir", "LR", "--all"]) == 0
    out = capsys.readouterr().out
    assert "rankdir=LR;" in out and '"layer2.relu1" [' in out
    with pytest.raises(SystemExit) as info:
        main(["graph", str(spec), "--rankdir", "sideways"])
    assert info.value.code == 2


def test_branches_are_held_in_concat_order(net: archc.Network) -> None:
    dot = to_dot(net)
    assert '{ rank=same; "fire.conv2" -> "fire.conv3" -> "fire.identity1" [style=invis]; }' in dot
    # declared in forward order: a cluster where its first layer is, not after its parent's own boxes
    googlenet = to_dot(archc.load(SPECS / "googlenet.arch"))
    assert googlenet.index('"inception3a.branch1.conv" [') < googlenet.index('"inception3a.maxpool1" [')


@pytest.mark.skipif(not HAS_DOT, reason="Graphviz's dot is not installed")
def test_branches_are_drawn_left_to_right_in_concat_order() -> None:
    """Graphviz's own layout: GoogLeNet's four branches, 1x1 | 3x3 | 5x5 | pool, as the paper draws them."""
    dot = to_dot(archc.load(SPECS / "googlenet.arch"))
    plain = subprocess.run(["dot", "-Tplain"], input=dot.encode(), capture_output=True, check=True).stdout.decode()
    x = {f[1].strip('"'): float(f[2]) for f in (line.split() for line in plain.splitlines()) if f[0] == "node"}
    for inception in ("inception3a", "inception4c", "inception5b"):
        heads = [f"{inception}.{h}" for h in ("branch1.conv", "branch2a.conv", "branch3a.conv", "maxpool1")]
        assert [x[h] for h in heads] == sorted(x[h] for h in heads), inception


@pytest.mark.skipif(not HAS_DOT, reason="Graphviz's dot is not installed")
def test_svg_and_png(tmp_path: Path, net: archc.Network) -> None:
    svg, png = tmp_path / "net.svg", tmp_path / "net.png"
    spec = tmp_path / "mini.arch"
    spec.write_text(SPEC)
    assert main(["graph", str(spec), "-o", str(svg)]) == 0
    text = svg.read_text()
    assert text.lstrip().startswith("<?xml") and "<svg" in text and "layer2.conv1" in text
    assert main(["graph", str(SPECS / "alexnet_lecture.arch"), "-o", str(png), "--collapse"]) == 0
    assert png.read_bytes().startswith(b"\x89PNG")
    # the DOT text itself is valid Graphviz input for every spec
    for path in sorted(SPECS.glob("*.arch"))[:6]:
        proc = subprocess.run(["dot", "-Tsvg"], input=to_dot(archc.load(path)).encode(), capture_output=True)
        assert proc.returncode == 0, proc.stderr


def test_dot_needs_nothing_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no `dot` anywhere
    out = tmp_path / "net.dot"
    assert main(["graph", str(SPECS / "alexnet_lecture.arch"), "-o", str(out)]) == 0
    assert out.read_text().startswith('digraph "AlexNet" {')
    assert main(["graph", str(SPECS / "alexnet_lecture.arch"), "-o", str(tmp_path / "net.svg")]) == 1
    err = capsys.readouterr().err
    assert "apt-get install graphviz" in err and "brew install graphviz" in err
    assert not (tmp_path / "net.svg").exists()


def test_stdout_bad_spec_and_usage(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["graph", str(SPECS / "alexnet_lecture.arch")]) == 0
    assert capsys.readouterr().out.startswith('digraph "AlexNet"')
    bad = tmp_path / "bad.arch"
    bad.write_text("input 4\nfc 3 -> 4\n")
    assert main(["graph", str(bad), "-o", str(tmp_path / "x.dot")]) == 1
    assert "error[E202]" in capsys.readouterr().err
    assert not (tmp_path / "x.dot").exists()
    with pytest.raises(SystemExit) as info:
        main(["graph", str(bad), "-o", str(tmp_path / "x.jpeg")])
    assert info.value.code == 2
