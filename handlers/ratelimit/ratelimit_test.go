package ratelimit

import (
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

func TestLimiterForgetsIdleKeys(t *testing.T) {
	l := New(time.Second, 1)
	now := time.Unix(1000, 0)
	for i := 0; i < 100; i++ {
		l.Allow(string(rune('a'+i%26))+string(rune(i)), now)
	}
	l.Allow("x", now.Add(time.Hour))
	if n := len(l.buckets); n != 1 {
		t.Fatalf("%d buckets kept after an hour idle, want 1", n)
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
