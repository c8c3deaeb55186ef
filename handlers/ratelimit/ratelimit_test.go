package ratelimit

import (
	"strconv"
	"testing"
	"time"
)

func TestLimiterAllowsBurstThenWaits(t *testing.T) {
	l := New(time.Minute, 2)
	now := time.Unix(1000, 0)
	for i := 0; i < 2; i++ {
		if ok, _ := l.Allow("a", now); !ok {
			t.Fatalf("event %d within burst refused", i)
		}
	}
	ok, wait := l.Allow("a", now)
	if ok || wait <= 0 || wait > time.Minute {
		t.Fatalf("third event: ok=%v wait=%v, want refused with a wait up to a minute", ok, wait)
	}
	if ok, _ := l.Allow("b", now); !ok {
		t.Fatal("another key is limited by the first")
	}
	if ok, _ := l.Allow("a", now.Add(time.Minute)); !ok {
		t.Fatal("not refilled after the period")
	}
}

func TestLimiterRefusalsDoNotConsume(t *testing.T) {
	l := New(time.Minute, 1)
	now := time.Unix(1000, 0)
	l.Allow("a", now)
	for i := 0; i < 100; i++ {
		l.Allow("a", now.Add(time.Duration(i)*time.Millisecond))
	}
	if ok, _ := l.Allow("a", now.Add(time.Minute)); !ok {
		t.Fatal("refused events pushed the refill back")
	}
}

func TestLimiterForgetsIdleKeys(t *testing.T) {
	l := New(time.Second, 1)
	now := time.Unix(1000, 0)
	for i := 0; i < 100; i++ {
		l.Allow(strconv.Itoa(i), now)
	}
	l.Allow("x", now.Add(time.Hour))
	if n := l.Len(); n != 1 {
		t.Fatalf("%d buckets kept after an hour idle, want 1", n)
	}
}

// A slow refill (5 minutes here) must not keep every key for 5 minutes:
// keys are swept at least every sweepEvery once their bucket is full.
func TestLimiterSweepsWithinSweepInterval(t *testing.T) {
	l := New(time.Second, 300)
	now := time.Unix(1000, 0)
	for i := 0; i < 1000; i++ {
		l.Allow(strconv.Itoa(i), now)
	}
	l.Allow("x", now.Add(sweepEvery+time.Second))
	if n := l.Len(); n != 1 {
		t.Fatalf("%d keys kept, want 1", n)
	}
}

func TestLimiterBoundedUnderFlood(t *testing.T) {
	l := New(time.Hour, 3).WithMaxKeys(1000)
	now := time.Unix(1000, 0)
	for i := 0; i < 100_000; i++ {
		l.Allow(strconv.Itoa(i), now)
	}
	if n := l.Len(); n > 1000 {
		t.Fatalf("%d keys kept, want at most 1000", n)
	}
}

func TestDisabledLimiterAllowsAll(t *testing.T) {
	l := New(0, 1)
	for i := 0; i < 10; i++ {
		if ok, _ := l.Allow("a", time.Now()); !ok {
			t.Fatal("disabled limiter refused")
		}
	}
}
