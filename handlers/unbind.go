package handlers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/sigil-matrix/sigil/gen"
	"github.com/sigil-matrix/sigil/handlers/federation"
	"github.com/sigil-matrix/sigil/handlers/matrixerr"
)

// verifyTimeout bounds fetching a homeserver's keys to check its signature.
const verifyTimeout = 15 * time.Second

// unbindRequest is the body of either unbind operation.
type unbindRequest struct {
	mxid, medium, address string
	sid, clientSecret     *string
}

// unbind removes the binding of a 3PID to mxid, if there is one. The caller
// proves it may: with the validated session of that 3PID (sid and
// client_secret), or with a request signed by the homeserver of mxid
// (Authorization: X-Matrix, as Synapse sends on deactivation and
// /account/3pid/delete). Unbinding what is not bound succeeds.
func (s *Server) unbind(ctx context.Context, r unbindRequest) error {
	if err := checkMXID(r.mxid); err != nil {
		return err
	}
	address := canonicalAddress(r.medium, r.address)
	switch {
	case r.sid != nil && r.clientSecret != nil:
		sess, err := s.validatedSession(ctx, *r.sid, *r.clientSecret)
		if err != nil {
			return err
		}
		if sess.Medium != r.medium || sess.Address != address {
			return matrixerr.Forbidden("The 3PID does not match the session")
		}
	case xMatrixAuth(httpRequest(ctx)) != "":
		if err := s.verifyHomeserver(ctx, r.mxid); err != nil {
			return err
		}
	default:
		return matrixerr.Forbidden("Unbinding needs sid and client_secret, or a request signed by the user's homeserver")
	}
	deleted, err := s.store.DeleteAssociation(ctx, r.medium, address, r.mxid)
	if err != nil {
		return matrixerr.Unknown(fmt.Errorf("delete association: %w", err))
	}
	if deleted {
		s.log.Info("unbound", "medium", r.medium, "mxid", r.mxid)
	}
	return nil
}

// xMatrixAuth is the first Authorization header of the X-Matrix scheme.
func xMatrixAuth(r *http.Request) string {
	if r == nil {
		return ""
	}
	for _, v := range r.Header.Values("Authorization") {
		scheme, _, _ := strings.Cut(strings.TrimSpace(v), " ")
		if strings.EqualFold(scheme, "X-Matrix") {
			return v
		}
	}
	return ""
}

// verifyHomeserver checks the request's X-Matrix signature and that the
// signing homeserver is the one mxid belongs to.
func (s *Server) verifyHomeserver(ctx context.Context, mxid string) error {
	req := httpRequest(ctx)
	if req == nil || req.GetBody == nil {
		return matrixerr.Unknown(errors.New("unbind: the raw request is not available"))
	}
	rc, err := req.GetBody()
	if err != nil {
		return matrixerr.Unknown(fmt.Errorf("unbind: request body: %w", err))
	}
	body, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		return matrixerr.Unknown(fmt.Errorf("unbind: request body: %w", err))
	}
	vctx, cancel := context.WithTimeout(ctx, verifyTimeout)
	defer cancel()
	origin, err := s.fed.VerifyRequest(vctx, req, body, s.cfg.ServerName)
	if errors.Is(err, federation.ErrUnreachable) {
		name := "the homeserver"
		if a, perr := federation.ParseXMatrix(xMatrixAuth(req)); perr == nil {
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

// UnbindV1 is POST /_matrix/identity/api/v1/3pid/unbind.
func (s *Server) UnbindV1(ctx context.Context, req gen.UnbindV1RequestObject) (gen.UnbindV1ResponseObject, error) {
	if err := s.unbind(ctx, unbindRequestOf(*req.Body)); err != nil {
		return nil, err
	}
	return gen.UnbindV1200JSONResponse{}, nil
}

// UnbindV2 is POST /_matrix/identity/v2/3pid/unbind. Like Sydent it needs
// no access token: a homeserver unbinding for a deactivated user has none.
func (s *Server) UnbindV2(ctx context.Context, req gen.UnbindV2RequestObject) (gen.UnbindV2ResponseObject, error) {
	// The two bodies are the same schema, so the same Go struct.
	if err := s.unbind(ctx, unbindRequestOf(gen.UnbindV1JSONRequestBody(*req.Body))); err != nil {
		return nil, err
	}
	return gen.UnbindV2200JSONResponse{}, nil
}

func unbindRequestOf(b gen.UnbindV1JSONRequestBody) unbindRequest {
	return unbindRequest{
		mxid: b.Mxid, medium: b.Threepid.Medium, address: b.Threepid.Address,
		sid: b.Sid, clientSecret: b.ClientSecret,
	}
}
