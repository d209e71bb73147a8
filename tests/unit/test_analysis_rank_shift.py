"""mixgap.results.analysis.rank_shift (and the shared loop of mixgap.stages.scoring under it) on hand-made logits,
a hand-built bigram model and a tiny random Llama."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from mixgap.results.analysis import rank_shift as rs
from mixgap.stages import scoring


def test_token_ranks_hand_made_logits():
    logits = torch.tensor([[0.1, 3.0, 2.0, -1.0],   # target 2 (2.0): only 3.0 is larger -> rank 2
                           [5.0, 5.0, 1.0, 0.0],    # target 1 ties with 0: ties count for the target -> rank 1
                           [0.0, 1.0, 2.0, 3.0]])   # target 0: three larger -> rank 4
    assert scoring.token_ranks(logits, torch.tensor([2, 1, 0])).tolist() == [2, 1, 4]


@pytest.mark.parametrize(("logits", "targets", "message"), [
    (torch.zeros(3, 4), torch.tensor([0, 1]), "expected"),
    (torch.zeros(2, 4), torch.tensor([0, 4]), r"token ids in \[0, 4\)"),
    (torch.zeros(4), torch.tensor([0]), "expected"),
])
def test_token_ranks_rejects_bad_shapes(logits, targets, message):
    with pytest.raises(ValueError, match=message):
        scoring.token_ranks(logits, targets)


@pytest.mark.parametrize(("rank", "category"), [(1, "unshifted"), (2, "marginal"), (3, "marginal"), (4, "shifted"),
                                                (49152, "shifted")])
def test_shift_category_urial_bins(rank, category):
    assert rs.shift_category(rank) == category


def test_shift_category_rejects_rank_zero():
    with pytest.raises(ValueError, match="rank=0"):
        rs.shift_category(0)


def test_shift_shares_counts_positions_over_completions():
    shares = rs.shift_shares([[1, 1, 2, 5], [4, 1], []])
    assert shares == {"positions": 6, "unshifted": 3 / 6, "marginal": 1 / 6, "shifted": 2 / 6}
    assert rs.shift_shares([]) == {"positions": 0, "unshifted": 0.0, "marginal": 0.0, "shifted": 0.0}


def test_token_stats_and_top_shifted():
    stats = rs.token_stats([[7, 8, 7, 9], [7, 9], [5]], [[5, 1, 10, 2], [1, 4], [9]])
    assert (stats[7].occurrences, stats[7].shifted, stats[7].mean_shifted_rank) == (3, 2, 7.5)
    assert (stats[8].occurrences, stats[8].shifted, stats[8].mean_shifted_rank) == (1, 0, None)
    assert (stats[9].occurrences, stats[9].shifted, stats[9].mean_shifted_rank) == (2, 1, 4.0)
    # 7 is shifted twice; 9 and 5 once each, 9 occurs more often; 8 never shifted
    assert rs.top_shifted(stats) == [7, 9, 5]
    assert rs.top_shifted(stats, top=1) == [7]


def test_token_stats_rejects_misaligned_lists():
    with pytest.raises(ValueError, match="completion 0: 2 tokens but 1 ranks"):
        rs.token_stats([[1, 2]], [[1]])


class Bigram(torch.nn.Module):
    """A causal LM whose next-token logits depend on the current token only: logits after token a = TABLE[a]."""

    TABLE = torch.tensor([[0.0, 1.0, 2.0, 3.0, 4.0],
                          [4.0, 3.0, 2.0, 1.0, 0.0],
                          [1.0, 1.0, 1.0, 1.0, 1.0],
                          [0.0, 0.0, 0.0, 9.0, 0.0],
                          [3.0, 2.0, 1.0, 0.0, -1.0]])

    def __init__(self):
        super().__init__()
        self.head = torch.nn.Linear(5, 5, bias=False)
        self.head.weight.data = self.TABLE.T.contiguous()  # one-hot(a) @ W.T = TABLE[a]
        self.calls: list[tuple[int, ...]] = []

        class Body(torch.nn.Module):
            def forward(body, input_ids, attention_mask):  # noqa: N805
                self.calls.append(tuple(input_ids.shape))
                return SimpleNamespace(last_hidden_state=torch.nn.functional.one_hot(input_ids, 5).float())

        self.base_model = Body()

    def get_output_embeddings(self):
        return self.head


def test_completion_ranks_on_a_bigram_model_known_ranks():
    model = Bigram()
    sequences = [
        ([0, 1, 2, 3], 2),      # 2 after 1: TABLE[1] has 4, 3 above 2 -> 3; 3 after 2: all tied -> 1
        ([4, 0, 4, 4, 1], 1),   # 0|4 -> 1; 4|0 -> 1; 4|4 (-1, four above) -> 5; 1|4 (2, one above) -> 2
        ([3, 3], 2),            # empty completion
    ]
    ranks = rs.completion_ranks(model, sequences, batch_size=2, chunk=2, pad_id=0)
    assert ranks == [[3, 1], [1, 1, 5, 2], []]
    assert model.calls == [(2, 5), (1, 2)]  # longest first, right-padded to the batch's longest


def test_the_shared_scoring_loop_gives_bigram_surprisals_and_ranks_at_scattered_positions():
    """The loop under completion_ranks, at non-contiguous positions: nll = logsumexp(TABLE[a]) - TABLE[a][b]."""
    model = Bigram()
    lse = [math.log(sum(math.exp(v) for v in row)) for row in Bigram.TABLE.tolist()]
    ((nlls, ranks), (empty_nlls, empty_ranks)) = scoring.score_sequences(
        model, [([4, 0, 4, 4, 1], [1, 3, 4]), ([3, 3], [])], batch_size=2, chunk=2)
    # 0|4: TABLE[4][0] = 3 (top); 4|4: -1 (four above); 1|4: 2 (one above)
    assert nlls == pytest.approx([lse[4] - 3.0, lse[4] + 1.0, lse[4] - 2.0], abs=1e-6) and ranks == [1, 5, 2]
    assert (empty_nlls, empty_ranks) == ([], [])
    assert rs.completion_ranks(Bigram(), [([4, 0, 4, 4, 1], 1)], batch_size=1)[0] == [1, 1, 5, 2]  # same loop


def test_completion_ranks_rejects_prompt_outside_sequence():
    with pytest.raises(ValueError, match="n_prompt=0"):
        rs.completion_ranks(Bigram(), [([1, 2], 0)], batch_size=1)
    with pytest.raises(ValueError, match=r"max_sequences=0, max_tokens=None: both must be >= 1"):
        rs.completion_ranks(Bigram(), [([1, 2], 1)], batch_size=0)


def test_completion_ranks_batched_equals_one_by_one_on_a_tiny_llama():
    """Right padding, batching and chunked LM-head calls give the ranks of a plain full-logits forward."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    model = LlamaForCausalLM(config).eval()
    gen = torch.Generator().manual_seed(1)
    sequences = [(torch.randint(0, 97, (n,), generator=gen).tolist(), p) for n, p in ((12, 5), (7, 3), (20, 4), (9, 9))]
    got = rs.completion_ranks(model, sequences, batch_size=3, chunk=4, pad_id=0)
    for (ids, p), ranks in zip(sequences, got, strict=True):
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0]
        assert ranks == scoring.token_ranks(logits[p - 1 : len(ids) - 1], torch.tensor(ids[p:])).tolist()
    assert [len(r) for r in got] == [7, 4, 16, 0]
    assert any(r > 3 for ranks in got for r in ranks)  # a random model shifts: the check is not vacuous
