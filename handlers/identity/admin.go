package identity

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/sigil-matrix/sigil/spec/matrixerr"
	"github.com/sigil-matrix/sigil/store"
)

// The operator's operations (sigil bindings, invites, onbind). They apply
// the same rules as the API (canonical addresses, one store transaction
// per change, the lookup index kept in step) without any HTTP.

// Subject is what an operator names on the command line: a Matrix user ID
// ("@alice:example.org"), or a 3PID ("alice@example.org",
// "email:alice@example.org", "msisdn:447700900123", "+44 7700 900123").
type Subject struct {
	MXID, Medium, Address string
}

// ParseSubject reads a Subject; an email address is case-folded as binds
// store it, a phone number keeps its digits.
func ParseSubject(s string) (Subject, error) {
	s = strings.TrimSpace(s)
	switch {
	case strings.HasPrefix(s, "@"):
		if err := checkMXID(s); err != nil {
			return Subject{}, err
		}
		return Subject{MXID: s}, nil
	case strings.HasPrefix(s, "email:"):
		return emailSubject(strings.TrimPrefix(s, "email:"))
	case strings.HasPrefix(s, "msisdn:"):
		return phoneSubject(strings.TrimPrefix(s, "msisdn:"))
	case strings.Contains(s, "@"):
		return emailSubject(s)
	default:
		return phoneSubject(s)
	}
}

func emailSubject(s string) (Subject, error) {
	a, err := canonicalEmail(s)
	if err != nil {
		return Subject{}, err
	}
	return Subject{Medium: mediumEmail, Address: a}, nil
}

func phoneSubject(s string) (Subject, error) {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= '0' && r <= '9':
			b.WriteRune(r)
		case r == '+' || r == ' ' || r == '-' || r == '(' || r == ')':
		default:
			return Subject{}, matrixerr.InvalidParam(fmt.Sprintf("%q is neither a Matrix user ID, an email address nor a phone number", s))
		}
	}
	if b.Len() < 6 || b.Len() > 15 {
		return Subject{}, matrixerr.InvalidParam(fmt.Sprintf("%q is not a phone number in international form", s))
	}
	return Subject{Medium: mediumMSISDN, Address: b.String()}, nil
}

func (sub Subject) filter() store.BindingFilter {
	return store.BindingFilter{MXID: sub.MXID, Medium: sub.Medium, Address: sub.Address}
}

// Bindings lists the bindings of sub (all bindings if sub is empty), up
// to limit, after the one with ID after (paging).
func (s *Service) Bindings(ctx context.Context, sub Subject, after uint, limit int) ([]store.Association, error) {
	f := sub.filter()
	f.AfterID = after
	as, err := s.store.ListAssociations(ctx, f, limit)
	if err != nil {
		return nil, matrixerr.Unknown(err)
	}
	return as, nil
}

// DeleteBindings removes every binding of sub (of an MXID: all its 3PIDs)
// in one transaction, as unbinds would, and returns how many it removed.
func (s *Service) DeleteBindings(ctx context.Context, sub Subject) (int64, error) {
	if sub == (Subject{}) {
		return 0, matrixerr.InvalidParam("name a Matrix user ID or a 3PID")
	}
	as, err := s.store.ListAssociations(ctx, sub.filter(), 100000)
	if err != nil {
		return 0, matrixerr.Unknown(err)
	}
	n, err := s.store.DeleteAssociations(ctx, as)
	if err != nil {
		return 0, matrixerr.Unknown(err)
	}
	s.log.Info("bindings deleted by the operator", "count", n)
	return n, nil
}

// Invites lists stored invites, for one 3PID when sub names one.
func (s *Service) Invites(ctx context.Context, sub Subject, includeDelivered bool, limit int) ([]store.Invite, error) {
	if sub.MXID != "" {
		return nil, matrixerr.InvalidParam("invites are stored by 3PID: name an email address or phone number")
	}
	invs, err := s.store.ListInvites(ctx, store.InviteFilter{
		Medium: sub.Medium, Address: sub.Address, IncludeDelivered: includeDelivered,
	}, limit)
	if err != nil {
		return nil, matrixerr.Unknown(err)
	}
	return invs, nil
}

// ErrNotFound is returned by the operator's operations when what they
// were asked to change does not exist.
var ErrNotFound = errors.New("not found")

// CancelInvite deletes a pending invite: it will not be delivered when its
// 3PID is bound, and its ephemeral key stops being valid.
func (s *Service) CancelInvite(ctx context.Context, token string) error {
	err := s.store.CancelInvite(ctx, token)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("no pending invite with that token (delivered ones cannot be cancelled): %w", ErrNotFound)
	}
	if err != nil {
		return matrixerr.Unknown(err)
	}
	return nil
}

// OnBindQueue lists onbind deliveries in state (store.OnBindQueued,
// OnBindFailed, OnBindDelivered or "" for all) and the queue's figures.
func (s *Service) OnBindQueue(ctx context.Context, state string, limit int) ([]store.OnBindDelivery, store.OnBindQueueStats, error) {
	ds, err := s.store.ListOnBinds(ctx, state, limit)
	if err != nil {
		return nil, store.OnBindQueueStats{}, matrixerr.Unknown(err)
	}
	st, err := s.store.OnBindQueueStats(ctx)
	if err != nil {
		return nil, st, matrixerr.Unknown(err)
	}
	return ds, st, nil
}

// RetryOnBind makes a delivery due now with fresh attempts (id), or every
// given-up one (id 0); a running worker of this process is woken, others
// see it at their next poll.
func (s *Service) RetryOnBind(ctx context.Context, id uint) (int64, error) {
	n, err := s.store.RetryOnBinds(ctx, id, s.now())
	if err != nil {
		return 0, matrixerr.Unknown(err)
	}
	if id != 0 && n == 0 {
		return 0, fmt.Errorf("no undelivered onbind delivery %d: %w", id, ErrNotFound)
	}
	s.wakeOnBind()
	return n, nil
}
