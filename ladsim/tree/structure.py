"""The token tree of WORLDS.md (World 1), enumerated: nodes, edges, responses and the maps between them.

Vocabulary ``V`` tokens ``0..V-1``, token ``0`` = EOS; responses of at most ``L`` tokens, EOS included.

* A **node** is a prefix of non-EOS tokens of length ``0..L-1`` (the root is the empty prefix). Nodes are
  numbered by depth, then lexicographically: node ``0`` is the root, nodes ``1..V-1`` the prefixes ``(1)``,
  ``(2)``, ... There are ``M = sum_{d<L} (V-1)^d`` nodes; the tabular policy has one logit row per node.
* An **edge** is a (node, token) pair, numbered ``token * M + node``: the flat index into the policy's
  ``(V, M)`` logits. The softmax of each node runs over the first of those axes: torch's row-wise kernels are
  slow on rows of a few entries (a log-softmax over ``8 x 121`` rows of 4 took 68 us, over the middle axis of
  the ``(8, 4, 121)`` transpose 7 us; one thread, float64, 2026-12-03).
* A **response** is a path from the root that stops at an EOS edge (terminated, length ``d + 1`` from a node of
  depth ``d``) or at a non-EOS edge of a node of depth ``L - 1`` (truncated, length ``L``, no EOS). Every
  response ends at its own edge (its **leaf edge**), so there are ``R = M + (V-1)^L`` responses. They are
  numbered by length, then lexicographically by their tokens (EOS, token 0, first): with ``V = 3, L = 2`` the
  order is ``0``, ``1 0``, ``1 1``, ``1 2``, ``2 0``, ``2 1``, ``2 2``.

``log pi(y) = sum_t log pi(y_t | y_<t)`` is a **path sum** over the response's edges; the gradient of a
function of the ``log pi(y)`` in the edges' log-probabilities is a **subtree sum** (each edge collects the
responses below it). Both are computed level by level over the ``L`` depths, in ``O(M V)`` work, never per
response and token. Shapes below: ``S`` leading rows (seeds), ``E = V M`` edges.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch
from torch import Tensor

EOS = 0


def count_nodes(vocab: int, length: int) -> int:
    """``M = sum_{d=0}^{L-1} (V-1)^d``, the number of nodes (logit rows)."""
    return sum((vocab - 1) ** d for d in range(length))


def count_responses(vocab: int, length: int) -> int:
    """``R = M + (V-1)^L``: one terminated response per node, plus the truncated ones."""
    return count_nodes(vocab, length) + (vocab - 1) ** length


def count_tokens(vocab: int, length: int) -> int:
    """Total tokens over all responses: ``sum_{d<L} (d + 1) (V-1)^d + L (V-1)^L``."""
    return sum((d + 1) * (vocab - 1) ** d for d in range(length)) + length * (vocab - 1) ** length


@dataclass(frozen=True)
class TokenTree:
    """The enumerated tree for vocabulary ``vocab`` (``V >= 2``) and maximum length ``length`` (``L >= 1``).

    Arrays (numpy, built once; ``torch`` copies via :meth:`tensors`):

    * ``node_depth (M,)``, ``node_parent_edge (M,)`` (``-1`` for the root);
    * ``response_edge (R,)`` the leaf edge, ``response_node (R,)`` its node, ``response_length (R,)``,
      ``response_terminated (R,)`` bool;
    * ``response_tokens (R, L)`` the tokens, ``-1`` past the end; ``response_edges (R, L)`` the edges along the
      path, ``-1`` past the end.

    The tree with ``L = 1`` has one node and ``V`` responses of one token each: the ``V``-armed bandit.
    """

    vocab: int
    length: int

    def __post_init__(self) -> None:
        for name, value, low in (("vocab", self.vocab, 2), ("length", self.length, 1)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")

    @property
    def n_nodes(self) -> int:
        return count_nodes(self.vocab, self.length)

    @property
    def n_edges(self) -> int:
        return self.n_nodes * self.vocab

    @property
    def n_responses(self) -> int:
        return count_responses(self.vocab, self.length)

    @property
    def n_tokens(self) -> int:
        return count_tokens(self.vocab, self.length)

    # --- enumeration ------------------------------------------------------------------------------------

    @cached_property
    def level_offsets(self) -> np.ndarray:
        """``(L + 1,)``: nodes of depth ``d`` are ``level_offsets[d] .. level_offsets[d + 1] - 1``."""
        sizes = [(self.vocab - 1) ** d for d in range(self.length)]
        return np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)

    @cached_property
    def node_depth(self) -> np.ndarray:
        off = self.level_offsets
        return np.repeat(np.arange(self.length), np.diff(off)).astype(np.int64)

    @cached_property
    def node_parent_edge(self) -> np.ndarray:
        """The edge leading into each node (``-1`` for the root): node ``off[d] + i`` (``d >= 1``) is reached
        from node ``off[d-1] + i // (V-1)`` by token ``1 + i % (V-1)``."""
        V, M, off = self.vocab, self.n_nodes, self.level_offsets
        out = np.full(M, -1, dtype=np.int64)
        for d in range(1, self.length):
            i = np.arange(off[d + 1] - off[d])
            parent = off[d - 1] + i // (V - 1)
            out[off[d]:off[d + 1]] = (1 + i % (V - 1)) * M + parent
        return out

    @cached_property
    def _responses(self) -> dict[str, np.ndarray]:
        """Leaf edges ordered by (length, tokens): a terminated response of length ``d + 1`` ends at node
        ``n`` (depth ``d``) with EOS; the truncated ones end at a depth-``L-1`` node with tokens ``1..V-1``.
        Within one length the nodes' lexicographic order is the responses' (EOS sorts first, so a terminated
        response ``p 0`` precedes the truncated ``p a`` of the same node)."""
        V, L, M, off = self.vocab, self.length, self.n_nodes, self.level_offsets
        edges, lengths = [], []
        for d in range(L):
            nodes = np.arange(off[d], off[d + 1])
            if d < L - 1:
                edges.append(EOS * M + nodes)
                lengths.append(np.full(nodes.size, d + 1))
            else:  # depth L-1: EOS and the truncating tokens share the length L
                edges.append((np.arange(V)[None, :] * M + nodes[:, None]).reshape(-1))
                lengths.append(np.full(nodes.size * V, L))
        edge = np.concatenate(edges).astype(np.int64)
        return {"edge": edge, "length": np.concatenate(lengths).astype(np.int64)}

    @property
    def response_edge(self) -> np.ndarray:
        return self._responses["edge"]

    @property
    def response_node(self) -> np.ndarray:
        return self.response_edge % self.n_nodes

    @property
    def response_length(self) -> np.ndarray:
        return self._responses["length"]

    @property
    def response_terminated(self) -> np.ndarray:
        return self.response_edge // self.n_nodes == EOS

    @cached_property
    def response_edges(self) -> np.ndarray:
        """``(R, L)`` the edges of each response's path, root first, ``-1`` past its end."""
        R, L = self.n_responses, self.length
        out = np.full((R, L), -1, dtype=np.int64)
        edge = self.response_edge.copy()
        position = self.response_length - 1
        rows = np.arange(R)
        while True:
            live = position >= 0
            if not live.any():
                break
            out[rows[live], position[live]] = edge[live]
            node = edge[live] % self.n_nodes
            edge[live] = self.node_parent_edge[node]
            position[live] -= 1
        return out

    @cached_property
    def response_tokens(self) -> np.ndarray:
        """``(R, L)`` the tokens of each response, ``-1`` past its end."""
        edges = self.response_edges
        return np.where(edges >= 0, edges // self.n_nodes, -1)

    def response_strings(self) -> list[str]:
        """Each response's tokens as space-separated integers, EOS included (``"2 1 3 0"``)."""
        return [" ".join(str(t) for t in row if t >= 0) for row in self.response_tokens.tolist()]

    def index_of(self, tokens: tuple[int, ...] | list[int]) -> int:
        """The index of the response with these tokens (a terminated one ends in ``0``); ``ValueError`` if
        there is none (a token outside ``0..V-1``, an EOS before the end, too long, or short without EOS)."""
        tokens = tuple(int(t) for t in tokens)
        V, L = self.vocab, self.length
        if not tokens or any(not 0 <= t < V for t in tokens):
            raise ValueError(f"tokens {list(tokens)} must be non-empty and in 0..{V - 1}")
        body, last = tokens[:-1], tokens[-1]
        if EOS in body:
            raise ValueError(f"tokens {list(tokens)} hold an EOS (0) before the end")
        if len(tokens) > L or (last != EOS and len(tokens) != L):
            raise ValueError(f"tokens {list(tokens)} are no response of the tree with L = {L}: responses end "
                             f"in EOS (0) within {L} tokens or are truncated at exactly {L}")
        node = 0
        for t in body:
            node = self.child(node, t)
        edge = last * self.n_nodes + node
        index = np.searchsorted(self._edge_order, edge)
        return int(self._edge_order_index[index])

    @cached_property
    def _edge_order(self) -> np.ndarray:
        return np.sort(self.response_edge)

    @cached_property
    def _edge_order_index(self) -> np.ndarray:
        return np.argsort(self.response_edge, kind="stable")

    def child(self, node: int, token: int) -> int:
        """The node reached from ``node`` by the non-EOS ``token`` (``node`` must have depth < L - 1)."""
        d = int(self.node_depth[node])
        i = node - int(self.level_offsets[d])
        return int(self.level_offsets[d + 1]) + i * (self.vocab - 1) + token - 1

    # --- torch maps ---------------------------------------------------------------------------------------

    def tensors(self, device: torch.device | str = "cpu") -> "TreeMaps":
        """The index tensors the engine needs, on ``device``."""
        return TreeMaps(self, torch.device(device))


class TreeMaps:
    """Index tensors of a :class:`TokenTree` on one device, and the maps between edges, nodes and responses.

    ``levels[d]`` (``d = 1..L-1``) holds the nodes of depth ``d`` and ``level_parent_edges[d]`` the edges
    into them, for the level-by-level path and subtree sums.
    """

    def __init__(self, tree: TokenTree, device: torch.device) -> None:
        self.tree, self.device = tree, device
        as_t = lambda a: torch.as_tensor(a, dtype=torch.long, device=device)  # noqa: E731
        off = tree.level_offsets
        self.levels = [as_t(np.arange(off[d], off[d + 1])) for d in range(tree.length)]
        self.level_parent_edges = [None] + [as_t(tree.node_parent_edge[off[d]:off[d + 1]])
                                            for d in range(1, tree.length)]
        self.response_edge = as_t(tree.response_edge)
        self.response_node = as_t(tree.response_node)
        self.response_length = as_t(tree.response_length)
        edges = tree.response_edges
        keep = edges >= 0
        self.token_edge = as_t(edges[keep])                        # (T,) every token of every response
        self.token_response = as_t(np.nonzero(keep)[0])            # (T,) its response, row-major order
        self.token_node = self.token_edge % tree.n_nodes

    def node_path_sums(self, edge_values: Tensor) -> Tensor:
        """``(S, M)``: for each node, the sum of ``edge_values (S, E)`` over the edges from the root to it
        (0 at the root): e.g. ``log pi(prefix)`` from the edges' log-probabilities."""
        S = edge_values.shape[0]
        out = edge_values.new_zeros(S, self.tree.n_nodes)
        for d in range(1, self.tree.length):
            parents = self.level_parent_edges[d] % self.tree.n_nodes
            out[:, self.levels[d]] = out[:, parents] + edge_values[:, self.level_parent_edges[d]]
        return out

    def path_sums(self, edge_values: Tensor) -> Tensor:
        """``(S, R)``: the sum of ``edge_values (S, E)`` along each response's path (``log pi(y)`` from the
        edges' log-probabilities)."""
        nodes = self.node_path_sums(edge_values)
        return nodes[:, self.response_node] + edge_values[:, self.response_edge]

    def subtree_sums(self, response_values: Tensor) -> Tensor:
        """``(S, E)``: for each edge, the sum of ``response_values (S, R)`` over the responses whose path uses
        it: the adjoint of :meth:`path_sums` (the gradient in the edges of a loss of the ``log pi(y)``)."""
        S, V = response_values.shape[0], self.tree.vocab
        out = response_values.new_zeros(S, self.tree.n_edges)
        out[:, self.response_edge] = response_values  # each response owns its leaf edge
        for d in range(self.tree.length - 1, 0, -1):
            below = out.view(S, V, -1)[:, :, self.levels[d]].sum(1)  # (S, nodes of depth d)
            out[:, self.level_parent_edges[d]] = below  # an inner edge leads to exactly one node
        return out

    def node_visits(self, response_values: Tensor) -> Tensor:
        """``(S, M)``: for each node, the sum of ``response_values (S, R)`` over the responses that pass
        through it (visit it as a prefix): with ``pi(y)`` the probability that a response visits the node."""
        edges = self.subtree_sums(response_values)
        return edges.view(edges.shape[0], self.tree.vocab, -1).sum(1)
