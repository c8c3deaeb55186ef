package identity

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
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
	// Concurrency is how many deliveries are attempted at once, to all
	// homeservers (default 16).
	Concurrency int
	// PerDestination is how many deliveries to one homeserver are
	// attempted at once (default 2): a homeserver that does not answer
	// holds at most this many of the Concurrency slots.
	PerDestination int
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
		o.Concurrency = 16
	}
	if o.PerDestination <= 0 {
		o.PerDestination = 2
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

// RunOnBindWorker delivers queued onbind callbacks until ctx ends, and
// then cancels the calls still in flight (RunOnBindDeliveries lets them
// finish).
func (s *Service) RunOnBindWorker(ctx context.Context) { s.RunOnBindDeliveries(ctx, ctx) }

// RunOnBindDeliveries delivers queued onbind callbacks until ctx ends:
// every Poll, at once when a bind queues one, and whenever a call ends. All
// state is in the database, so deliveries survive restarts, and a delivery
// is leased while it is being attempted, so several processes sharing a
// database do not send it twice.
//
// Each homeserver has its own queue: at most PerDestination calls to it run
// at once, at most Concurrency in all, and a destination whose queue is
// full is read past, so a homeserver that does not answer holds up only its
// own deliveries. When ctx ends no new call starts; those in flight run to
// their end (or Timeout) unless calls is cancelled first, whose cause is
// logged with each call it cut: a clean stop never leaves a delivered
// invite unrecorded, to be sent again after the restart.
func (s *Service) RunOnBindDeliveries(ctx, calls context.Context) {
	o := s.onbind.options()
	tick := time.NewTicker(o.Poll)
	defer tick.Stop()
	q := newOnBindQueue(o)
	finished := make(chan store.OnBindDelivery, o.Concurrency)
	for {
		if ctx.Err() == nil && s.fillOnBindQueue(ctx, o, q) {
			s.startOnBinds(ctx, calls, o, q, finished)
		}
		select {
		case <-ctx.Done():
			for q.running > 0 {
				q.finish(<-finished)
			}
			return
		case d := <-finished:
			q.finish(d)
		case <-tick.C:
		case <-s.onbind.wake:
		}
	}
}

// onBindQueue is the worker's view of the deliveries it has read: per
// destination, those waiting for a free slot and the number in flight. Only
// the worker's goroutine touches it.
type onBindQueue struct {
	o       OnBindOptions
	known   map[uint]bool // waiting or in flight
	dests   map[string]*onBindDest
	order   []string // destinations, in the order they are served
	next    int      // where the next round-robin pass starts in order
	running int
}

type onBindDest struct {
	waiting []store.OnBindDelivery
	running int
}

// onBindQueued bounds the deliveries read ahead, per destination and in all.
const (
	onBindQueuedPerDest = 16
	onBindQueuedTotal   = 1024
)

func newOnBindQueue(o OnBindOptions) *onBindQueue {
	return &onBindQueue{o: o, known: map[uint]bool{}, dests: map[string]*onBindDest{}}
}

func (q *onBindQueue) dest(server string) *onBindDest {
	d := q.dests[server]
	if d == nil {
		d = &onBindDest{}
		q.dests[server] = d
		q.order = append(q.order, server)
	}
	return d
}

// finish records the end of d's call.
func (q *onBindQueue) finish(d store.OnBindDelivery) {
	server := mxidServer(d.MXID)
	q.running--
	delete(q.known, d.ID)
	if dst := q.dests[server]; dst != nil {
		dst.running--
	}
	q.forget(server)
}

// forget drops a destination with nothing waiting or in flight.
func (q *onBindQueue) forget(server string) {
	dst := q.dests[server]
	if dst == nil || dst.running > 0 || len(dst.waiting) > 0 {
		return
	}
	delete(q.dests, server)
	if i := slices.Index(q.order, server); i >= 0 {
		q.order = slices.Delete(q.order, i, i+1)
		if q.next > i {
			q.next--
		}
	}
}

// fillOnBindQueue reads the due deliveries the queue has room for. It
// reports false while a delivered success is still unwritten: then nothing
// may be sent until it is.
func (s *Service) fillOnBindQueue(ctx context.Context, o OnBindOptions, q *onBindQueue) bool {
	if !s.recordUnrecorded(ctx) {
		return false
	}
	for len(q.known) < onBindQueuedTotal && ctx.Err() == nil {
		ids := make([]uint, 0, len(q.known))
		for id := range q.known {
			ids = append(ids, id)
		}
		var full []string
		for server, d := range q.dests {
			if len(d.waiting) >= onBindQueuedPerDest {
				full = append(full, server)
			}
		}
		due, err := s.store.DueOnBindsExcept(ctx, s.now(), onBindBatch, ids, full)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Error("onbind: load due deliveries", "err", err)
			}
			return true
		}
		for _, d := range due {
			dst := q.dest(mxidServer(d.MXID))
			q.known[d.ID] = true
			dst.waiting = append(dst.waiting, d)
		}
		if len(due) < onBindBatch {
			return true
		}
	}
	return true
}

// startOnBinds starts the waiting deliveries that have a free slot, taking
// destinations in turn so that none starves the others.
func (s *Service) startOnBinds(ctx, calls context.Context, o OnBindOptions, q *onBindQueue, finished chan<- store.OnBindDelivery) {
	for progress := true; progress && q.running < o.Concurrency && ctx.Err() == nil; {
		progress = false
		n := len(q.order)
		for k := 0; k < n && q.running < o.Concurrency; k++ {
			i := (q.next + k) % n
			server := q.order[i]
			dst := q.dests[server]
			if len(dst.waiting) == 0 || dst.running >= o.PerDestination {
				continue
			}
			d := dst.waiting[0]
			dst.waiting = dst.waiting[1:]
			progress = true
			if !s.leaseOnBind(ctx, o, &d) {
				delete(q.known, d.ID) // taken by another worker, or already done
				continue
			}
			dst.running++
			q.running++
			go func() {
				s.deliverOnBind(calls, o, d)
				finished <- d
			}()
		}
		if n > 0 {
			q.next = (q.next + 1) % n
		}
		for _, server := range slices.Clone(q.order) {
			q.forget(server)
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

// deliverOnBind makes one attempt and records its outcome. ctx bounds the
// call: it ends only when the worker's calls are cut (shutdown_timeout).
func (s *Service) deliverOnBind(ctx context.Context, o OnBindOptions, d store.OnBindDelivery) {
	server := mxidServer(d.MXID)
	attempt := d.Attempts + 1
	log := s.log.With("delivery", d.ID, "mxid", d.MXID, "server", server, "attempt", attempt)
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
		s.observeOnBind(OnBindDelivered, attempt)
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
		// Cut at shutdown: due again at the next start. The cause says
		// why (shutdown_timeout reached), not just "context canceled".
		s.observeOnBind(OnBindInterrupted, attempt)
		log.Warn("onbind call cut: will retry after the restart", "reason", context.Cause(ctx), "err", err)
		err = s.store.RescheduleOnBind(rctx, d.ID, now, err.Error())
	case permanentOnBindError(err):
		s.observeOnBind(OnBindFailed, attempt)
		log.Error("onbind refused (by the homeserver or by policy): giving up", "err", err)
		err = s.store.MarkOnBindFailed(rctx, d.ID, now, err.Error())
	case now.Sub(d.CreatedAt) >= o.GiveUpAfter:
		s.observeOnBind(OnBindFailed, attempt)
		log.Error("onbind undeliverable: giving up", "err", err, "since", d.CreatedAt)
		err = s.store.MarkOnBindFailed(rctx, d.ID, now, err.Error())
	default:
		s.observeOnBind(OnBindRetry, attempt)
		delay := onBindBackoff(o, attempt)
		log.Warn("onbind failed: will retry", "err", err, "retry_in", delay)
		err = s.store.RescheduleOnBind(rctx, d.ID, now.Add(delay), err.Error())
	}
	if err != nil {
		log.Error("onbind: record failed attempt", "err", err)
	}
}

// Outcomes of an onbind attempt, as told to Deps.OnBindObserver.
const (
	// OnBindDelivered: the homeserver accepted the invites (the delivery
	// is done).
	OnBindDelivered = "delivered"
	// OnBindRetry: the attempt failed and will be retried.
	OnBindRetry = "retry"
	// OnBindFailed: the attempt failed and the delivery was given up.
	OnBindFailed = "failed"
	// OnBindInterrupted: the call was cut at shutdown; retried after the
	// restart.
	OnBindInterrupted = "interrupted"
)

// OnBindOutcomes are every outcome, for observers that list them upfront.
var OnBindOutcomes = []string{OnBindDelivered, OnBindRetry, OnBindFailed, OnBindInterrupted}

func (s *Service) observeOnBind(outcome string, attempt int) {
	if s.onBindObserver != nil {
		s.onBindObserver(outcome, attempt)
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
