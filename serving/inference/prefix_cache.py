"""Keys and values of prompt prefixes seen before, so a prefill computes only what is new.

Every RAG prompt starts with the same system prompt and, for questions about the same intent,
the same knowledge chunks; on a CPU the prefill of those ~250 tokens costs more than the whole
completion. Like vLLM's automatic prefix caching, the cache holds fixed-size blocks of tokens in
a trie: a block is found by (namespace, its parent block, its own tokens), so a hit is an exact
token match of the whole prefix, never a hash guess. The namespace is the adapter (LoRA changes
the keys and values), so rows of different adapters never share a block.

Memory is bounded: blocks are evicted least recently used first, and a lookup touches a chain
from its last block to its first, so a shared first block (the system prompt) outlives the
leaves hanging from it. Evicting a block evicts its descendants (unreachable without it).

Not thread-safe: the model runner calls it under its lock. It only ever holds keys and values
of prompts the gateway has already guarded.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

_Key = tuple[str, int, tuple[int, ...]]


@dataclass(eq=False)
class Block:
    """``keys``/``values`` [layers, kv_heads, block, head_dim] of ``block`` tokens after the parent's."""

    id: int
    key: _Key
    keys: torch.Tensor
    values: torch.Tensor
    children: set[int] = field(default_factory=set)

    @property
    def nbytes(self) -> int:
        return self.keys.nbytes + self.values.nbytes


@dataclass
class PrefixCacheStats:
    lookups: int = 0
    looked_up_tokens: int = 0
    hit_tokens: int = 0
    inserted_blocks: int = 0
    evicted_blocks: int = 0


class PrefixCache:
    """Blocks of ``block`` tokens, at most ``budget_bytes`` of keys and values in all."""

    def __init__(self, budget_bytes: int, block: int = 16) -> None:
        if block < 1:
            raise ValueError("block must be at least one token")
        self.budget_bytes, self.block = budget_bytes, block
        self._blocks: OrderedDict[int, Block] = OrderedDict()  # id -> block, least recent first
        self._index: dict[_Key, int] = {}
        self._next_id = 1  # 0 is the root every namespace's first block hangs from
        self.nbytes = 0
        self.stats = PrefixCacheStats()

    def __len__(self) -> int:
        return len(self._blocks)

    def match(self, namespace: str, tokens: Sequence[int], limit: int, *, record: bool = True) -> list[Block]:
        """The longest chain of cached blocks that prefixes ``tokens``, at most ``limit`` tokens.

        ``record=False``: a look that neither counts in the stats nor refreshes the blocks."""
        chain: list[Block] = []
        parent = 0
        for start in range(0, min(limit, len(tokens)) - self.block + 1, self.block):
            found = self._index.get((namespace, parent, tuple(tokens[start : start + self.block])))
            if found is None:
                break
            chain.append(self._blocks[found])
            parent = found
        if not record:
            return chain
        for block in reversed(chain):  # the first block ends up the most recently used
            self._blocks.move_to_end(block.id)
        self.stats.lookups += 1
        self.stats.looked_up_tokens += len(tokens)
        self.stats.hit_tokens += len(chain) * self.block
        return chain

    def insert(
        self,
        namespace: str,
        tokens: Sequence[int],
        chain: Sequence[Block],
        keys: torch.Tensor,
        values: torch.Tensor,
    ) -> int:
        """Cache the full blocks of ``tokens`` after ``chain`` (what :meth:`match` returned).

        ``keys``/``values`` [layers, kv_heads, n, head_dim] are those of ``tokens[len(chain) * block:]``
        (n at least the full blocks among them). Returns the blocks added.
        """
        parent = chain[-1].id if chain else 0
        if parent and parent not in self._blocks:
            return 0  # evicted while the prefill ran: its descendants could not be found again
        offset = len(chain) * self.block
        added, new = 0, []
        for start in range(offset, len(tokens) - self.block + 1, self.block):
            key = (namespace, parent, tuple(tokens[start : start + self.block]))
            existing = self._index.get(key)
            if existing is not None:
                parent = existing
                continue
            column = start - offset
            block = Block(
                self._next_id,
                key,
                keys[:, :, column : column + self.block].clone(),
                values[:, :, column : column + self.block].clone(),
            )
            if block.nbytes > self.budget_bytes:
                break
            self._next_id += 1
            self._blocks[block.id] = block
            self._index[key] = block.id
            if parent:
                self._blocks[parent].children.add(block.id)
            self.nbytes += block.nbytes
            new.append(block.id)
            parent, added = block.id, added + 1
        for block_id in reversed(new[:-1]):  # as in match: parents more recent than their children
            self._blocks.move_to_end(block_id)
        self.stats.inserted_blocks += added
        self._evict(keep=set(new))
        return added

    def drop(self, namespace: str) -> None:
        """Forget every block of ``namespace`` (its adapter was unloaded or replaced)."""
        for block in [b for b in self._blocks.values() if b.key[0] == namespace]:
            if block.id in self._blocks:
                self._remove(block.id)

    def clear(self) -> None:
        self._blocks.clear()
        self._index.clear()
        self.nbytes = 0

    def _evict(self, keep: set[int]) -> None:
        while self.nbytes > self.budget_bytes and self._blocks:
            victim = next((i for i in self._blocks if i not in keep), None)
            if victim is None:
                victim = next(iter(self._blocks))
            self._remove(victim)

    def _remove(self, block_id: int) -> None:
        block = self._blocks.pop(block_id)
        del self._index[block.key]
        self.nbytes -= block.nbytes
        self.stats.evicted_blocks += 1
        parent = block.key[1]
        if parent in self._blocks:
            self._blocks[parent].children.discard(block_id)
        for child in list(block.children):
            if child in self._blocks:
                self._remove(child)


def stack(chain: Sequence[Block]) -> tuple[torch.Tensor, torch.Tensor]:
    """The chain's keys and values as one [layers, kv_heads, tokens, head_dim] pair."""
    return torch.cat([b.keys for b in chain], dim=2), torch.cat([b.values for b in chain], dim=2)
