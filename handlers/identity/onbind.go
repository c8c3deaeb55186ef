package identity

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/sigil-matrix/sigil/handlers/federation"
	"github.com/sigil-matrix/sigil/handlers/signing"
	"github.com/sigil-matrix/sigil/store"
)

// OnBindOptions tune the delivery of onbind callbacks: the pending
// third-party invites of a 3PID, POSTed to the homeserver of the MXID it is
// bound to (/_matrix/federation/v1/3pid/onbind).
type OnBindOptions struct {
	// Backoff is the retry unit: after the n-th failed attempt the next one
	// is Backoff·2^n later (default 1s, i.e. 2^n seconds, as Sydent).
	Backoff time.Duration
	// MaxBackoff caps the delay between attempts (default 1h).
	MaxBackoff time.Duration
	// GiveUpAfter is how long after the bind a failing delivery is retried
	// before it is abandoned and its invites released (default 48h).
	GiveUpAfter time.Duration
	// Poll is how often the worker looks for due deliveries when nothing
	// wakes it (default 1s).
	Poll time.Duration
	// Timeout bounds one delivery attempt (default 30s); the federation
	// client's own timeout applies too.
	Timeout time.Duration
	// Concurrency is how many deliveries are attempted at once (default 4).
	Concurrency int
	// Lease is how long a delivery being attempted is reserved for this
	// worker; the lease is renewed every third of it while the call lasts,
	// so a worker that dies delays the deliveries it was sending by at
	// most this much (default 10s).
	Lease time.Duration
}

func (o *OnBindOptions) defaults() {
	if o.Backoff <= 0 {
		o.Backoff = time.Second
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = time.Hour
	}
	if o.GiveUpAfter <= 0 {
		o.GiveUpAfter = 48 * time.Hour
	}
	if o.Poll <= 0 {
		o.Poll = time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 4
	}
	if o.Lease <= 0 {
		o.Lease = 10 * time.Second
	}
}

// onBindBatch is how many due deliveries the worker takes at a time.
const onBindBatch = 32

// onBindState is the worker's per-server state.
type onBindState struct {
	wake chan struct{}
	mu   sync.Mutex
	opts OnBindOptions
	// unrecorded are deliveries the homeserver accepted whose success
	// could not be written yet (database unreachable): nothing is sent
	// until they are recorded, and they are never sent again.
	unrecorded map[uint]time.Time
}

func newOnBindState() *onBindState {
	st := &onBindState{wake: make(chan struct{}, 1), unrecorded: map[uint]time.Time{}}
	st.opts.defaults()
	return st
}

// ConfigureOnBind sets how onbind callbacks are retried; zero fields keep
// their defaults. Call it before RunOnBindWorker.
func (s *Service) ConfigureOnBind(o OnBindOptions) {
	o.defaults()
	st := s.onbind
	st.mu.Lock()
	st.opts = o
	st.mu.Unlock()
}

func (st *onBindState) options() OnBindOptions {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.opts
}

// onBindInvite is one invite in the onbind body. Homeservers use mxid,
// room_id, sender and signed; token is what Sydent also sends.
type onBindInvite struct {
	Medium  string         `json:"medium"`
	Address string         `json:"address"`
	MXID    string         `json:"mxid"`
	RoomID  string         `json:"room_id"`
	Sender  string         `json:"sender"`
	Token   string         `json:"token"`
	Signed  map[string]any `json:"signed"`
}

type onBindBody struct {
	Medium  string         `json:"medium"`
	Address string         `json:"address"`
	MXID    string         `json:"mxid"`
	Invites []onBindInvite `json:"invites"`
}

// onBindPayload builds the onbind body for invites. Each invite's signed
// block, {mxid, token}, is signed with the long-term key: homeservers check
// it against the public keys of the room's m.room.third_party_invite event,
// the first of which is that key.
func (s *Service) onBindPayload(medium, address, mxid string, invites []store.Invite) ([]byte, error) {
	body := onBindBody{Medium: medium, Address: address, MXID: mxid, Invites: make([]onBindInvite, 0, len(invites))}
	for _, inv := range invites {
		signed, err := signing.SignJSON(map[string]any{"mxid": mxid, "token": inv.Token}, s.cfg.ServerName, s.key)
		if err != nil {
			return nil, fmt.Errorf("sign invite: %w", err)
		}
		body.Invites = append(body.Invites, onBindInvite{
			Medium: inv.Medium, Address: inv.Address, MXID: mxid,
			RoomID: inv.RoomID, Sender: inv.Sender, Token: inv.Token, Signed: signed,
		})
	}
	return json.Marshal(body)
}

// wakeOnBind tells the worker a delivery was queued.
func (s *Service) wakeOnBind() {
	select {
	case s.onbind.wake <- struct{}{}:
	default:
	}
}

// RunOnBindWorker delivers queued onbind callbacks until ctx ends: every
// Poll, or at once when a bind queues one. All state is in the database, so
// deliveries survive restarts, and a delivery is leased while it is being
// attempted, so several processes sharing a database do not send it twice.
func (s *Service) RunOnBindWorker(ctx context.Context) {
	st := s.onbind
	o := st.options()
	tick := time.NewTicker(o.Poll)
	defer tick.Stop()
	for {
		s.deliverDueOnBinds(ctx, o)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-st.wake:
		}
	}
}

// deliverDueOnBinds attempts every due delivery, a batch at a time. Each
// is leased only when its attempt starts, so a worker that dies holds up
// only the deliveries it was sending.
func (s *Service) deliverDueOnBinds(ctx context.Context, o OnBindOptions) {
	if !s.recordUnrecorded(ctx) {
		return // a success is still unwritten: send nothing until it is
	}
	for ctx.Err() == nil {
		due, err := s.store.DueOnBinds(ctx, s.now(), onBindBatch, 0)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Error("onbind: load due deliveries", "err", err)
			}
			return
		}
		sem := make(chan struct{}, o.Concurrency)
		var wg sync.WaitGroup
		for _, d := range due {
			sem <- struct{}{}
			if ctx.Err() != nil || !s.leaseOnBind(ctx, o, &d) {
				<-sem
				continue
			}
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				s.deliverOnBind(ctx, o, d)
			}()
		}
		wg.Wait()
		if len(due) < onBindBatch {
			return
		}
	}
}

// leaseOnBind reserves d for one attempt; false when another worker took
// it first or the lease could not be written.
func (s *Service) leaseOnBind(ctx context.Context, o OnBindOptions, d *store.OnBindDelivery) bool {
	ok, err := s.store.LeaseOnBind(ctx, d, s.now(), o.Lease)
	if err != nil && ctx.Err() == nil {
		s.log.Error("onbind: lease delivery", "delivery", d.ID, "err", err)
	}
	return ok && err == nil
}

// renewLease keeps d leased while its call lasts; stop ends it.
func (s *Service) renewLease(ctx context.Context, o OnBindOptions, id uint) (stop func()) {
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(o.Lease / 3)
		defer tick.Stop()
		for {
			select {
			case <-rctx.Done():
				return
			case <-tick.C:
				if err := s.store.RenewOnBindLease(rctx, id, s.now().Add(o.Lease)); err != nil && rctx.Err() == nil {
					s.log.Warn("onbind: renew lease", "delivery", id, "err", err)
				}
			}
		}
	}()
	return func() { cancel(); <-done }
}

// recordUnrecorded retries writing the successes that could not be
// written, and reports whether none is left.
func (s *Service) recordUnrecorded(ctx context.Context) bool {
	st := s.onbind
	st.mu.Lock()
	defer st.mu.Unlock()
	for id, at := range st.unrecorded {
		if err := s.store.MarkOnBindDelivered(ctx, id, at); err != nil {
			if ctx.Err() == nil {
				s.log.Error("onbind delivered but not recorded yet: will retry before sending anything", "delivery", id, "err", err)
			}
			return false
		}
		s.log.Info("onbind delivery recorded", "delivery", id)
		delete(st.unrecorded, id)
	}
	return true
}

// deliverOnBind makes one attempt and records its outcome.
func (s *Service) deliverOnBind(ctx context.Context, o OnBindOptions, d store.OnBindDelivery) {
	server := mxidServer(d.MXID)
	log := s.log.With("delivery", d.ID, "mxid", d.MXID, "server", server, "attempt", d.Attempts+1)
	var err error
	if server == "" {
		err = fmt.Errorf("%w: no server name in %q", federation.ErrInvalidServerName, d.MXID)
	} else {
		stop := s.renewLease(ctx, o, d.ID)
		callCtx, cancel := context.WithTimeout(ctx, o.Timeout)
		err = s.fed.OnBind(callCtx, server, json.RawMessage(d.Payload))
		cancel()
		stop()
	}
	// Record the outcome even when shutting down: forgetting a success
	// would send the invites twice.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	now := s.now()
	if err == nil {
		if err := s.store.MarkOnBindDelivered(rctx, d.ID, now); err != nil {
			log.Error("onbind delivered but not recorded: recording it again before anything is sent", "err", err)
			s.onbind.mu.Lock()
			s.onbind.unrecorded[d.ID] = now
			s.onbind.mu.Unlock()
			return
		}
		log.Info("onbind delivered")
		return
	}
	switch {
	case ctx.Err() != nil:
		// Interrupted by shutdown: due again at the next start.
		log.Info("onbind interrupted: will retry", "err", err)
		err = s.store.RescheduleOnBind(rctx, d.ID, now, err.Error())
	case permanentOnBindError(err):
		log.Error("onbind refused (by the homeserver or by policy): giving up", "err", err)
		err = s.store.MarkOnBindFailed(rctx, d.ID, now, err.Error())
	case now.Sub(d.CreatedAt) >= o.GiveUpAfter:
		log.Error("onbind undeliverable: giving up", "err", err, "since", d.CreatedAt)
		err = s.store.MarkOnBindFailed(rctx, d.ID, now, err.Error())
	default:
		delay := onBindBackoff(o, d.Attempts+1)
		log.Warn("onbind failed: will retry", "err", err, "retry_in", delay)
		err = s.store.RescheduleOnBind(rctx, d.ID, now.Add(delay), err.Error())
	}
	if err != nil {
		log.Error("onbind: record failed attempt", "err", err)
	}
}

// onBindBackoff is the delay after the n-th failed attempt.
func onBindBackoff(o OnBindOptions, n int) time.Duration {
	d := o.Backoff
	for range n {
		d *= 2
		if d >= o.MaxBackoff {
			return o.MaxBackoff
		}
	}
	return d
}

// permanentOnBindError reports an answer that retrying cannot change: a
// malformed server name, a destination our policy refuses (a private
// address), or a 4xx other than timeouts and rate limits (Synapse answers
// 403 for an invite it does not know, 400 for a missing signed block).
func permanentOnBindError(err error) bool {
	if errors.Is(err, federation.ErrInvalidServerName) || errors.Is(err, federation.ErrForbiddenAddress) {
		return true
	}
	var se *federation.StatusError
	if errors.As(err, &se) {
		return se.StatusCode >= 400 && se.StatusCode < 500 &&
			se.StatusCode != http.StatusRequestTimeout && se.StatusCode != http.StatusTooManyRequests
	}
	return false
}
