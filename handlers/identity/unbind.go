package identity

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/sigil-matrix/sigil/handlers/federation"
	"github.com/sigil-matrix/sigil/spec/matrixerr"
)

// verifyTimeout bounds fetching a homeserver's keys to check its signature.
const verifyTimeout = 15 * time.Second

// UnbindRequest is an unbind call and its proof: the validated session of
// the 3PID (SID and ClientSecret), or a request signed by the homeserver
// of MXID (Signed, with an X-Matrix Authorization header).
type UnbindRequest struct {
	MXID, Medium, Address string
	SID, ClientSecret     *string
	Signed                *federation.SignedRequest
}

// Unbind removes the binding of a 3PID to MXID, if there is one. Synapse
// sends it signed on deactivation and /account/3pid/delete; clients send it
// with the session that validated the 3PID. Unbinding what is not bound
// succeeds. The delete and its lookup-index notification are one
// transaction.
func (s *Service) Unbind(ctx context.Context, r UnbindRequest) error {
	if err := checkMXID(r.MXID); err != nil {
		return err
	}
	address := canonicalAddress(r.Medium, r.Address)
	switch {
	case r.SID != nil && r.ClientSecret != nil:
		v, err := s.Validated(ctx, *r.SID, *r.ClientSecret)
		if err != nil {
			return err
		}
		if v.Medium != r.Medium || v.Address != address {
			return matrixerr.Forbidden("The 3PID does not match the session")
		}
	case r.Signed != nil && r.Signed.XMatrix() != "":
		if err := s.verifyHomeserver(ctx, *r.Signed, r.MXID); err != nil {
			return err
		}
	default:
		return matrixerr.Forbidden("Unbinding needs sid and client_secret, or a request signed by the user's homeserver")
	}
	deleted, err := s.store.DeleteAssociation(ctx, r.Medium, address, r.MXID)
	if err != nil {
		return matrixerr.Unknown(fmt.Errorf("delete association: %w", err))
	}
	if deleted {
		s.log.Info("unbound", "medium", r.Medium, "mxid", r.MXID)
	}
	return nil
}

// verifyHomeserver checks the request's X-Matrix signature and that the
// signing homeserver is the one mxid belongs to.
func (s *Service) verifyHomeserver(ctx context.Context, req federation.SignedRequest, mxid string) error {
	vctx, cancel := context.WithTimeout(ctx, verifyTimeout)
	defer cancel()
	origin, err := s.fed.VerifySigned(vctx, req, s.cfg.ServerName)
	if errors.Is(err, federation.ErrUnreachable) {
		name := "the homeserver"
		if a, perr := federation.ParseXMatrix(req.XMatrix()); perr == nil {
			name = "homeserver " + a.Origin
		}
		return matrixerr.New(http.StatusBadGateway, "M_UNKNOWN",
			fmt.Sprintf("Could not reach %s to check its signature", name)).WithCause(err)
	}
	if err != nil {
		return matrixerr.Forbidden("Invalid homeserver signature").WithCause(err)
	}
	if mxidServer(mxid) != origin {
		return matrixerr.Forbidden(fmt.Sprintf("Homeserver %s may not unbind users of another server", origin))
	}
	return nil
}
