"""What a view reads of a resource, as a tree, and the `from_json` schema (Spark DDL) that reads exactly that."""

from __future__ import annotations

from streaming.viewdef import model


class ReadNode:
    """One place in a resource the view reads: its FHIR type, if it is a list, and the fields read below it.

    `includes` are other trees read at the same place (a repeat's per-level reads); `loop` marks a recursive
    element (a repeat path's end) whose content is that repeat's tree again, one level deeper.
    """

    def __init__(self, fhir_type: str, many: bool) -> None:
        self.type = fhir_type
        self.many = many
        self.children: dict[str, ReadNode] = {}
        self.includes: list[ReadNode] = []
        self.loop: ReadNode | None = None

    def child(self, json_name: str, fhir_type: str, many: bool) -> ReadNode:
        """The node of field `json_name` below this one, made on first use."""
        node = self.children.get(json_name)
        if node is None:
            node = self.children[json_name] = ReadNode(fhir_type, many)
        return node


def _with_includes(nodes: list[ReadNode]) -> list[ReadNode]:
    """The nodes and every tree they include, each once."""
    out: list[ReadNode] = []
    todo = list(nodes)
    while todo:
        node = todo.pop(0)
        if all(node is not seen for seen in out):
            out.append(node)
            todo += node.includes
    return out


def _type(nodes: list[ReadNode], budgets: dict[int, int], primitives: frozenset[str]) -> str:
    """The Spark type of one place read by `nodes` (all at the same place), lists not included."""
    loops = [n.loop for n in nodes if n.loop is not None]
    for template in loops:
        left = budgets.get(id(template), 0)
        if left == 0:
            return "string"  # past the depth bound: kept as raw JSON, so reaching it is noticed, not dropped
        budgets = {**budgets, id(template): left - 1}
        nodes = [*nodes, template]
    nodes = _with_includes(nodes)
    fhir_type = nodes[0].type
    if fhir_type in primitives:
        return model.read_type(fhir_type)
    fields: dict[str, list[ReadNode]] = {}
    for node in nodes:
        for name, child in node.children.items():
            fields.setdefault(name, []).append(child)
    if not fields:
        fields = {"id": [ReadNode("string", False)]}  # an object read only for its presence
    parts = []
    for name, group in fields.items():
        inner = _type(group, budgets, primitives)
        many = any(n.many for n in group)
        parts.append(f"`{name}`: {f'array<{inner}>' if many else inner}")
    return f"struct<{', '.join(parts)}>"


def read_schema(root: ReadNode, primitives: frozenset[str], depths: dict[int, int]) -> str:
    """The type (`struct<a: string, b: array<...>>`) `from_json` reads the resource as: only what `root` reads.

    `depths` gives each repeat tree (by id) how many levels below its first one are read.
    """
    root.child("resourceType", "string", False)
    return _type([root], depths, primitives)
