package handlers

import (
	"context"
	"fmt"
	"io"

	"github.com/sigil-matrix/sigil/gen"
	"github.com/sigil-matrix/sigil/handlers/federation"
	"github.com/sigil-matrix/sigil/handlers/identity"
	"github.com/sigil-matrix/sigil/spec/matrixerr"
)

// UnbindV1 is POST /_matrix/identity/api/v1/3pid/unbind.
func (s *Server) UnbindV1(ctx context.Context, req gen.UnbindV1RequestObject) (gen.UnbindV1ResponseObject, error) {
	r, err := unbindRequest(ctx, *req.Body)
	if err == nil {
		err = s.id.Unbind(ctx, r)
	}
	if err != nil {
		return nil, err
	}
	return gen.UnbindV1200JSONResponse{}, nil
}

// UnbindV2 is POST /_matrix/identity/v2/3pid/unbind. Like Sydent it needs
// no access token: a homeserver unbinding for a deactivated user has none.
func (s *Server) UnbindV2(ctx context.Context, req gen.UnbindV2RequestObject) (gen.UnbindV2ResponseObject, error) {
	// The two bodies are the same schema, so the same Go struct.
	r, err := unbindRequest(ctx, gen.UnbindV1JSONRequestBody(*req.Body))
	if err == nil {
		err = s.id.Unbind(ctx, r)
	}
	if err != nil {
		return nil, err
	}
	return gen.UnbindV2200JSONResponse{}, nil
}

// unbindRequest takes the body and, for a homeserver's signed request, the
// parts its X-Matrix signature covers (the raw URI and body as received).
func unbindRequest(ctx context.Context, b gen.UnbindV1JSONRequestBody) (identity.UnbindRequest, error) {
	r := identity.UnbindRequest{
		MXID: b.Mxid, Medium: b.Threepid.Medium, Address: b.Threepid.Address,
		SID: b.Sid, ClientSecret: b.ClientSecret,
	}
	hr := httpRequest(ctx)
	if hr == nil || (federation.SignedRequest{Authorization: hr.Header.Values("Authorization")}).XMatrix() == "" {
		return r, nil
	}
	if hr.GetBody == nil {
		return r, matrixerr.Unknown(fmt.Errorf("unbind: the raw request is not available"))
	}
	body, err := readBody(hr.GetBody)
	if err != nil {
		return r, matrixerr.Unknown(fmt.Errorf("unbind: request body: %w", err))
	}
	signed := federation.SignedRequestOf(hr, body)
	r.Signed = &signed
	return r, nil
}

// readBody reads the request body as received again, through GetBody.
func readBody(getBody func() (io.ReadCloser, error)) ([]byte, error) {
	rc, err := getBody()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}
