"""The semantic tier over gRPC as `tollgate dev` runs it: MiniLM and Qdrant Edge."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from tollgate.cache.v1 import cache_pb2 as cache_pb
from tollgate.cache.v1 import cache_pb2_grpc
from tollgate.common.v1 import common_pb2 as common_pb

from services.cache.app import build_app
from services.cache.config import CacheSettings
from services.core.clock import FakeClock
from tests.conftest import ServeApp
from tests.grpc_helpers import ADMIN_KEY_SHA256S, admin_channel


def _request(text: str, tenant: str = "acme") -> cache_pb.CacheableRequest:
    return cache_pb.CacheableRequest(
        tenant_id=tenant, model="gpt-4.1-mini", input=text, temperature=0.0
    )


async def _serve(
    serve_app: ServeApp, tmp_path: Path, *, pair_judge: bool = False
) -> AsyncIterator[cache_pb2_grpc.CacheServiceStub]:
    settings = CacheSettings(
        port=0,
        state_dir=tmp_path / ("judged" if pair_judge else "rules"),
        admin_key_sha256s=ADMIN_KEY_SHA256S,
        semantic_mode="serve",
        pair_judge=pair_judge,
        # The judge decides low-overlap rewordings: MiniLM nominates them.
        embedding_backend="minilm" if pair_judge else "static",
    )
    running = await serve_app(await build_app(settings, FakeClock()), settings)
    async with admin_channel(running.address) as channel:
        yield cache_pb2_grpc.CacheServiceStub(channel)


@pytest.fixture
async def stub(
    serve_app: ServeApp, tmp_path: Path
) -> AsyncIterator[cache_pb2_grpc.CacheServiceStub]:
    async for served in _serve(serve_app, tmp_path):
        yield served


@pytest.fixture
async def judged_stub(
    serve_app: ServeApp, tmp_path: Path
) -> AsyncIterator[cache_pb2_grpc.CacheServiceStub]:
    async for served in _serve(serve_app, tmp_path, pair_judge=True):
        yield served


async def _store(stub: cache_pb2_grpc.CacheServiceStub, text: str, tenant: str) -> None:
    reply = await stub.Store(
        cache_pb.StoreRequest(
            request=_request(text, tenant),
            response=cache_pb.CachedResponse(output_text=f"answer for {tenant}"),
            complete=True,
        )
    )
    assert reply.stored


async def _lookup(
    stub: cache_pb2_grpc.CacheServiceStub, text: str, tenant: str = "acme"
) -> cache_pb.LookupResponse:
    reply: cache_pb.LookupResponse = await stub.Lookup(
        cache_pb.LookupRequest(request=_request(text, tenant), allow_semantic=True)
    )
    return reply


async def test_a_paraphrase_is_a_semantic_hit_with_similarity_and_age(
    stub: cache_pb2_grpc.CacheServiceStub,
) -> None:
    await _store(stub, "How do I reset my password?", "acme")
    found = await _lookup(stub, "hey, how can I reset my password please?")
    assert (found.hit, found.status) == (True, common_pb.CACHE_STATUS_SEMANTIC)
    assert 0.5 <= found.similarity < 1.0
    assert found.response.output_text == "answer for acme"
    assert found.accepted_check == "normalized"
    assert found.semantic_mode == cache_pb.SEMANTIC_MODE_SERVE
    assert found.age.ToTimedelta().total_seconds() == 0
    stats = await stub.GetStats(cache_pb.GetStatsRequest())
    assert (stats.semantic_hits, stats.semantic_entries) == (1, 1)
    assert dict(stats.semantic_hits_by_check) == {"normalized": 1}
    assert stats.semantic_backend == "qdrant-edge"
    assert stats.embedding_version.startswith("minilm-static-384@")


async def test_a_near_miss_is_rejected_by_verification(
    stub: cache_pb2_grpc.CacheServiceStub,
) -> None:
    await _store(stub, "What is the status of order #48213?", "acme")
    found = await _lookup(stub, "What is the status of order #48231?")
    assert (found.hit, found.status) == (False, common_pb.CACHE_STATUS_MISS)
    assert found.rejected_candidates == 1
    stats = await stub.GetStats(cache_pb.GetStatsRequest())
    assert dict(stats.verification_rejections_by_check) == {"numbers": 1}


async def test_identical_text_never_crosses_tenants_in_either_tier(
    stub: cache_pb2_grpc.CacheServiceStub,
) -> None:
    text = "How do I reset my password?"
    await _store(stub, text, "acme")
    for query in (text, "hey, how can I reset my password please?"):
        found = await _lookup(stub, query, tenant="globex")
        assert (found.hit, found.status) == (False, common_pb.CACHE_STATUS_MISS)
    await _store(stub, text, "globex")
    exact = await _lookup(stub, text, tenant="globex")
    assert exact.response.output_text == "answer for globex"
    semantic = await _lookup(stub, "hey, how can I reset my password please?")
    assert semantic.response.output_text == "answer for acme"


async def test_invalidate_reports_both_tiers(
    stub: cache_pb2_grpc.CacheServiceStub,
) -> None:
    await _store(stub, "How do I reset my password?", "acme")
    reply = await stub.Invalidate(cache_pb.InvalidateRequest(tenant_id="acme"))
    assert (
        reply.removed_entries,
        reply.exact_removed_entries,
        reply.semantic_removed_entries,
    ) == (2, 1, 1)
    assert not (await _lookup(stub, "hey, how can I reset my password please?")).hit


async def test_shadow_mode_finds_the_hit_answers_a_miss_and_measures_agreement(
    stub: cache_pb2_grpc.CacheServiceStub,
) -> None:
    await stub.SetSemanticPolicy(
        cache_pb.SetSemanticPolicyRequest(
            rule=cache_pb.SemanticPolicyRule(
                tenant_id="acme", mode=cache_pb.SEMANTIC_MODE_SHADOW
            )
        )
    )
    await _store(stub, "How do I reset my password?", "acme")
    paraphrase = "hey, how can I reset my password please?"
    found = await _lookup(stub, paraphrase)
    assert (found.hit, found.status) == (False, common_pb.CACHE_STATUS_MISS)
    assert (found.shadow_hit, found.accepted_check) == (True, "normalized")
    assert found.semantic_mode == cache_pb.SEMANTIC_MODE_SHADOW
    # The upstream's fresh answer for the paraphrase is the same text: agreement.
    await _store(stub, paraphrase, "acme")
    stats = await stub.GetStats(cache_pb.GetStatsRequest())
    assert (stats.shadow_hits, stats.semantic_hits, stats.misses) == (1, 0, 1)
    assert (stats.shadow_comparisons, stats.shadow_agreements) == (1, 1)
    assert stats.shadow_agreement_rate == 1.0
    assert stats.default_semantic_mode == cache_pb.SEMANTIC_MODE_SERVE


async def test_semantic_policy_rules_resolve_most_specific_first(
    stub: cache_pb2_grpc.CacheServiceStub,
) -> None:
    set_reply = await stub.SetSemanticPolicy(
        cache_pb.SetSemanticPolicyRequest(
            rule=cache_pb.SemanticPolicyRule(
                tenant_id="acme",
                request_type=common_pb.REQUEST_TYPE_GENERATE,
                mode=cache_pb.SEMANTIC_MODE_OFF,
            )
        )
    )
    assert len(set_reply.rules) == 1
    await stub.SetSemanticPolicy(
        cache_pb.SetSemanticPolicyRequest(
            rule=cache_pb.SemanticPolicyRule(tenant_id="acme", similarity_threshold=0.8)
        )
    )
    policy = await stub.GetSemanticPolicy(
        cache_pb.GetSemanticPolicyRequest(
            tenant_id="acme", request_type=common_pb.REQUEST_TYPE_GENERATE
        )
    )
    assert policy.effective_mode == cache_pb.SEMANTIC_MODE_OFF
    assert policy.effective_similarity_threshold == pytest.approx(0.8)
    assert policy.default_mode == cache_pb.SEMANTIC_MODE_SERVE
    await _store(stub, "How do I reset my password?", "acme")
    request = _request("hey, how can I reset my password please?")
    request.request_type = common_pb.REQUEST_TYPE_GENERATE
    off = await stub.Lookup(
        cache_pb.LookupRequest(request=request, allow_semantic=True)
    )
    assert (off.hit, off.semantic_mode) == (False, cache_pb.SEMANTIC_MODE_OFF)
    cleared = await stub.SetSemanticPolicy(
        cache_pb.SetSemanticPolicyRequest(
            rule=cache_pb.SemanticPolicyRule(
                tenant_id="acme", request_type=common_pb.REQUEST_TYPE_GENERATE
            ),
            clear=True,
        )
    )
    assert len(cleared.rules) == 1
    on = await stub.Lookup(cache_pb.LookupRequest(request=request, allow_semantic=True))
    assert (on.hit, on.accepted_check) == (True, "normalized")


async def test_a_rule_that_sets_nothing_is_invalid(
    stub: cache_pb2_grpc.CacheServiceStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.SetSemanticPolicy(
            cache_pb.SetSemanticPolicyRequest(
                rule=cache_pb.SemanticPolicyRule(tenant_id="acme")
            )
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_the_pair_judge_serves_a_rewording_the_rules_cannot_pair(
    judged_stub: cache_pb2_grpc.CacheServiceStub, stub: cache_pb2_grpc.CacheServiceStub
) -> None:
    cached = "How do I create a Python virtual environment?"
    rewording = "Steps to set up a venv in Python?"
    for server in (judged_stub, stub):
        await _store(server, cached, "acme")
    # Neither the rules ("set up" / "create", "venv") nor a veto decide these two:
    # with the judge on, it serves the rewording and refuses the other action.
    found = await _lookup(judged_stub, rewording)
    assert (found.hit, found.status) == (True, common_pb.CACHE_STATUS_SEMANTIC)
    assert found.accepted_check == "judge"
    near_miss = await _lookup(
        judged_stub, "How do I delete a Python virtual environment?"
    )
    assert (near_miss.hit, near_miss.rejected_candidates) == (False, 1)
    stats = await judged_stub.GetStats(cache_pb.GetStatsRequest())
    assert dict(stats.semantic_hits_by_check) == {"judge": 1}
    assert dict(stats.verification_rejections_by_check) == {"judge": 1}
    # Off (the default), the rules alone reject the rewording.
    assert not (await _lookup(stub, rewording)).hit
