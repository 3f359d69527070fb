"""The shared request budget: token buckets in process and in Redis, hooked into SageMaker."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from app.backends.base import BackendError
from app.backends.ratelimit import InProcessTokenBucket, RedisTokenBucket, bucket_for
from app.backends.sagemaker import SageMakerBackend
from tests.backends.conftest import endpoint_name, make_backend, sagemaker_settings


class FakeClock:
    """Time that only moves when someone sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.slept += seconds


def test_in_process_bucket_allows_the_burst_then_the_rate() -> None:
    clock = FakeClock()
    bucket = InProcessTokenBucket(rate_per_s=2.0, burst=3, clock=clock, sleep=clock.sleep)

    for _ in range(3):
        bucket.acquire(timeout_s=30)
    assert clock.slept == 0
    for _ in range(10):
        bucket.acquire(timeout_s=30)

    # Ten tokens beyond the burst at two a second take five seconds of waiting.
    assert clock.now >= 5.0
    assert clock.now < 5.0 * 1.1 + 0.5


def test_in_process_bucket_gives_up_with_a_retryable_error() -> None:
    clock = FakeClock()
    bucket = InProcessTokenBucket(rate_per_s=0.01, burst=1, clock=clock, sleep=clock.sleep)
    bucket.acquire(timeout_s=1)
    with pytest.raises(BackendError) as caught:
        bucket.acquire(timeout_s=1)
    assert caught.value.retryable is True
    assert clock.slept == 0  # it did not wait for a token that could not come in time


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.mark.redis
def test_redis_bucket_is_shared_by_every_holder_of_the_key(redis_client: redis.Redis) -> None:
    key = f"stratus:test:ratelimit:{uuid.uuid4().hex}"
    # Two workers' buckets on one key; a rate so slow no token refills during the test.
    workers = [RedisTokenBucket(redis_client, key, 0.001, 3) for _ in range(2)]
    try:
        waits = [workers[i % 2].try_take() for i in range(6)]
        assert waits[:3] == [0.0, 0.0, 0.0]
        assert all(wait > 100 for wait in waits[3:])
        other = RedisTokenBucket(redis_client, key + ":other", 0.001, 3)
        assert other.try_take() == 0.0
        assert 0 < redis_client.pttl(key) <= 3_001_000
    finally:
        redis_client.delete(key, key + ":other")


@pytest.mark.redis
def test_redis_bucket_refills_at_the_rate(redis_client: redis.Redis) -> None:
    key = f"stratus:test:ratelimit:{uuid.uuid4().hex}"
    bucket = RedisTokenBucket(redis_client, key, 1000.0, 1)
    try:
        assert bucket.try_take() == 0.0
        wait = bucket.try_take()
        # Empty: the next token is at most a millisecond away.
        assert 0.0 <= wait <= 0.001
    finally:
        redis_client.delete(key)


def test_redis_down_falls_back_to_a_local_bucket() -> None:
    client = redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    clock = FakeClock()
    fallback = InProcessTokenBucket(0.001, 2, clock=clock, sleep=clock.sleep)
    bucket = RedisTokenBucket(client, "k", 0.001, 2, fallback=fallback)
    assert [bucket.try_take() > 0 for _ in range(3)] == [False, False, True]


def test_bucket_follows_the_broker(redis_url: str) -> None:
    assert isinstance(bucket_for(redis_url, "k", 1.0, 1), RedisTokenBucket)
    local = bucket_for("sqla+sqlite:///x.db", "k", 1.0, 1)
    assert isinstance(local, InProcessTokenBucket)
    assert bucket_for("sqla+sqlite:///x.db", "k", 1.0, 1) is local


@pytest.mark.redis
def test_backend_key_is_per_account_and_region(aws: None, redis_url: str) -> None:
    settings = sagemaker_settings(region="eu-west-1")
    settings = settings.model_copy(update={"broker_url": redis_url})
    backend = SageMakerBackend(settings)
    assert isinstance(backend.limiter, RedisTokenBucket)
    assert backend.limiter.key == "stratus:ratelimit:sagemaker:123456789012:eu-west-1"


def test_every_sagemaker_call_takes_a_token(aws: None) -> None:
    clock = FakeClock()
    backend = make_backend()
    backend.limiter = InProcessTokenBucket(0.001, 3, clock=clock, sleep=clock.sleep)
    names = [endpoint_name() for _ in range(3)]

    backend.describe_endpoints(names)  # three calls: the whole burst
    with pytest.raises(BackendError) as caught:
        backend.describe_endpoints(names[:1])

    assert caught.value.retryable is True
    assert "budget" in str(caught.value)
