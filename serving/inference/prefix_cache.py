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

Blocks live in slots of a few large tensors, reused through a free list (:class:`Slots`), rather than a
tensor each among a prefill's temporaries; room is made before a block is added, so the cache never holds
more than its budget.

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
    slot: int | None = None  # where keys/values live in the cache's Slots; None: a tensor of its own

    @property
    def nbytes(self) -> int:
        return self.keys.nbytes + self.values.nbytes


# Slots are carved from tensors of about this size: few enough allocations not to fragment the heap, small
# enough that a cache short of its cap holds little it does not use.
CHUNK_BYTES = 16 << 20


class Slots:
    """Homes of one block shape: keys and values side by side, in chunks allocated as the cache grows.

    Chunks are kept until :meth:`clear`: a slot freed by eviction is the next one taken, so the cache holds at
    most its cap plus a chunk's spare slots."""

    def __init__(self, shape: torch.Size, dtype: torch.dtype, budget_bytes: int) -> None:
        self.shape, self.dtype = shape, dtype
        slot_bytes = 2 * shape.numel() * dtype.itemsize
        self.per_chunk = max(1, min(CHUNK_BYTES, budget_bytes) // slot_bytes)
        self._chunks: list[torch.Tensor] = []  # [per_chunk, 2 (keys, values), *shape]
        self._free: list[int] = []

    @property
    def allocated_bytes(self) -> int:
        return sum(chunk.nbytes for chunk in self._chunks)

    def fits(self, keys: torch.Tensor) -> bool:
        return keys.shape == self.shape and keys.dtype == self.dtype

    def take(self) -> tuple[int, torch.Tensor, torch.Tensor]:
        """A free slot: its number and its keys and values views."""
        if not self._free:
            base = len(self._chunks) * self.per_chunk
            self._chunks.append(torch.empty((self.per_chunk, 2, *self.shape), dtype=self.dtype))
            self._free.extend(range(base + self.per_chunk - 1, base - 1, -1))
        slot = self._free.pop()
        pair = self._chunks[slot // self.per_chunk][slot % self.per_chunk]
        return slot, pair[0], pair[1]

    def give(self, slot: int) -> None:
        self._free.append(slot)


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
        self._slots: Slots | None = None  # made by the first insert, which knows the model's block shape
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
        path = {b.id for b in chain}  # the blocks this prompt hangs from: never evicted to make room for it
        new: list[int] = []
        for start in range(offset, len(tokens) - self.block + 1, self.block):
            key = (namespace, parent, tuple(tokens[start : start + self.block]))
            existing = self._index.get(key)
            if existing is not None:
                parent = existing
                path.add(existing)
                continue
            column = start - offset
            block_keys = keys[:, :, column : column + self.block]
            block_values = values[:, :, column : column + self.block]
            # Room first, so the cache never holds more than its budget (nor its slots more than that).
            if not self._make_room(block_keys.nbytes + block_values.nbytes, keep=path):
                break
            block = self._store(key, block_keys, block_values)
            self._next_id += 1
            self._blocks[block.id] = block
            self._index[key] = block.id
            if parent:
                self._blocks[parent].children.add(block.id)
            self.nbytes += block.nbytes
            new.append(block.id)
            path.add(block.id)
            parent = block.id
        for block_id in reversed(new[:-1]):  # as in match: parents more recent than their children
            self._blocks.move_to_end(block_id)
        self.stats.inserted_blocks += len(new)
        return len(new)

    def _store(self, key: _Key, keys: torch.Tensor, values: torch.Tensor) -> Block:
        """A block holding a copy of ``keys``/``values``, in a slot when they have the cache's block shape."""
        if self._slots is None:
            self._slots = Slots(keys.shape, keys.dtype, self.budget_bytes)
        if not self._slots.fits(keys):  # another shape or dtype (never from one model): its own tensors
            return Block(self._next_id, key, keys.clone(), values.clone())
        slot, home_keys, home_values = self._slots.take()
        home_keys.copy_(keys)
        home_values.copy_(values)
        return Block(self._next_id, key, home_keys, home_values, slot=slot)

    @property
    def allocated_bytes(self) -> int:
        """Memory the cache holds for keys and values, its free slots included."""
        return 0 if self._slots is None else self._slots.allocated_bytes

    def drop(self, namespace: str) -> None:
        """Forget every block of ``namespace`` (its adapter was unloaded or replaced)."""
        for block in [b for b in self._blocks.values() if b.key[0] == namespace]:
            if block.id in self._blocks:
                self._remove(block.id)

    def clear(self) -> None:
        self._blocks.clear()
        self._index.clear()
        self._slots = None
        self.nbytes = 0

    def _make_room(self, nbytes: int, keep: set[int]) -> bool:
        """Evicts least recently used blocks outside ``keep`` until ``nbytes`` more fit; False if they cannot."""
        if nbytes > self.budget_bytes:
            return False
        while self.nbytes + nbytes > self.budget_bytes:
            victim = next((i for i in self._blocks if i not in keep), None)
            if victim is None:
                return False
            self._remove(victim)  # its descendants too: none is in keep (keep is one path from the root)
        return True

    def _remove(self, block_id: int) -> None:
        block = self._blocks.pop(block_id)
        del self._index[block.key]
        self.nbytes -= block.nbytes
        if block.slot is not None and self._slots is not None:
            self._slots.give(block.slot)
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
