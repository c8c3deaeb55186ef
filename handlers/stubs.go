// Stubs for the operations spec/ describes but no handler implements yet.
// Each answers 501 M_UNRECOGNIZED, so gen.StrictServerInterface is satisfied
// and the routes exist; each stub is deleted and replaced by a real handler as
// its area is implemented.

package handlers

import (
	"context"
	"net/http"

	"github.com/sigil-matrix/sigil/gen"
	"github.com/sigil-matrix/sigil/handlers/matrixerr"
)

// errNotImplemented is what every stub returns.
var errNotImplemented = matrixerr.New(http.StatusNotImplemented, "M_UNRECOGNIZED", "Not implemented yet")

// GetPingV1 stubs GET /_matrix/identity/api/v1.
func (s *Server) GetPingV1(ctx context.Context, req gen.GetPingV1RequestObject) (gen.GetPingV1ResponseObject, error) {
	return nil, errNotImplemented
}

// BulkLookup stubs POST /_matrix/identity/api/v1/bulk_lookup.
func (s *Server) BulkLookup(ctx context.Context, req gen.BulkLookupRequestObject) (gen.BulkLookupResponseObject, error) {
	return nil, errNotImplemented
}

// LookupV1 stubs GET /_matrix/identity/api/v1/lookup.
func (s *Server) LookupV1(ctx context.Context, req gen.LookupV1RequestObject) (gen.LookupV1ResponseObject, error) {
	return nil, errNotImplemented
}

// IsEphemeralPubKeyValid stubs GET /_matrix/identity/api/v1/pubkey/ephemeral/isvalid.
func (s *Server) IsEphemeralPubKeyValid(ctx context.Context, req gen.IsEphemeralPubKeyValidRequestObject) (gen.IsEphemeralPubKeyValidResponseObject, error) {
	return nil, errNotImplemented
}

// IsPubKeyValid stubs GET /_matrix/identity/api/v1/pubkey/isvalid.
func (s *Server) IsPubKeyValid(ctx context.Context, req gen.IsPubKeyValidRequestObject) (gen.IsPubKeyValidResponseObject, error) {
	return nil, errNotImplemented
}

// GetPubKey stubs GET /_matrix/identity/api/v1/pubkey/{keyId}.
func (s *Server) GetPubKey(ctx context.Context, req gen.GetPubKeyRequestObject) (gen.GetPubKeyResponseObject, error) {
	return nil, errNotImplemented
}

// MsisdnRequestToken stubs POST /_matrix/identity/api/v1/validate/msisdn/requestToken.
func (s *Server) MsisdnRequestToken(ctx context.Context, req gen.MsisdnRequestTokenRequestObject) (gen.MsisdnRequestTokenResponseObject, error) {
	return nil, errNotImplemented
}

// MsisdnSubmitTokenGet stubs GET /_matrix/identity/api/v1/validate/msisdn/submitToken.
func (s *Server) MsisdnSubmitTokenGet(ctx context.Context, req gen.MsisdnSubmitTokenGetRequestObject) (gen.MsisdnSubmitTokenGetResponseObject, error) {
	return nil, errNotImplemented
}

// MsisdnSubmitTokenPost stubs POST /_matrix/identity/api/v1/validate/msisdn/submitToken.
func (s *Server) MsisdnSubmitTokenPost(ctx context.Context, req gen.MsisdnSubmitTokenPostRequestObject) (gen.MsisdnSubmitTokenPostResponseObject, error) {
	return nil, errNotImplemented
}

// GetPingV2 stubs GET /_matrix/identity/v2.
func (s *Server) GetPingV2(ctx context.Context, req gen.GetPingV2RequestObject) (gen.GetPingV2ResponseObject, error) {
	return nil, errNotImplemented
}

// BindV2 stubs POST /_matrix/identity/v2/3pid/bind.
func (s *Server) BindV2(ctx context.Context, req gen.BindV2RequestObject) (gen.BindV2ResponseObject, error) {
	return nil, errNotImplemented
}

// GetValidated3pidV2 stubs GET /_matrix/identity/v2/3pid/getValidated3pid.
func (s *Server) GetValidated3pidV2(ctx context.Context, req gen.GetValidated3pidV2RequestObject) (gen.GetValidated3pidV2ResponseObject, error) {
	return nil, errNotImplemented
}

// GetAccount stubs GET /_matrix/identity/v2/account.
func (s *Server) GetAccount(ctx context.Context, req gen.GetAccountRequestObject) (gen.GetAccountResponseObject, error) {
	return nil, errNotImplemented
}

// Logout stubs POST /_matrix/identity/v2/account/logout.
func (s *Server) Logout(ctx context.Context, req gen.LogoutRequestObject) (gen.LogoutResponseObject, error) {
	return nil, errNotImplemented
}

// RegisterAccount stubs POST /_matrix/identity/v2/account/register.
func (s *Server) RegisterAccount(ctx context.Context, req gen.RegisterAccountRequestObject) (gen.RegisterAccountResponseObject, error) {
	return nil, errNotImplemented
}

// GetHashDetails stubs GET /_matrix/identity/v2/hash_details.
func (s *Server) GetHashDetails(ctx context.Context, req gen.GetHashDetailsRequestObject) (gen.GetHashDetailsResponseObject, error) {
	return nil, errNotImplemented
}

// LookupV2 stubs POST /_matrix/identity/v2/lookup.
func (s *Server) LookupV2(ctx context.Context, req gen.LookupV2RequestObject) (gen.LookupV2ResponseObject, error) {
	return nil, errNotImplemented
}

// IsEphemeralPubKeyValidV2 stubs GET /_matrix/identity/v2/pubkey/ephemeral/isvalid.
func (s *Server) IsEphemeralPubKeyValidV2(ctx context.Context, req gen.IsEphemeralPubKeyValidV2RequestObject) (gen.IsEphemeralPubKeyValidV2ResponseObject, error) {
	return nil, errNotImplemented
}

// IsPubKeyValidV2 stubs GET /_matrix/identity/v2/pubkey/isvalid.
func (s *Server) IsPubKeyValidV2(ctx context.Context, req gen.IsPubKeyValidV2RequestObject) (gen.IsPubKeyValidV2ResponseObject, error) {
	return nil, errNotImplemented
}

// GetPubKeyV2 stubs GET /_matrix/identity/v2/pubkey/{keyId}.
func (s *Server) GetPubKeyV2(ctx context.Context, req gen.GetPubKeyV2RequestObject) (gen.GetPubKeyV2ResponseObject, error) {
	return nil, errNotImplemented
}

// BlindlySignStuffV2 stubs POST /_matrix/identity/v2/sign-ed25519.
func (s *Server) BlindlySignStuffV2(ctx context.Context, req gen.BlindlySignStuffV2RequestObject) (gen.BlindlySignStuffV2ResponseObject, error) {
	return nil, errNotImplemented
}

// StoreInviteV2 stubs POST /_matrix/identity/v2/store-invite.
func (s *Server) StoreInviteV2(ctx context.Context, req gen.StoreInviteV2RequestObject) (gen.StoreInviteV2ResponseObject, error) {
	return nil, errNotImplemented
}

// GetTerms stubs GET /_matrix/identity/v2/terms.
func (s *Server) GetTerms(ctx context.Context, req gen.GetTermsRequestObject) (gen.GetTermsResponseObject, error) {
	return nil, errNotImplemented
}

// AgreeToTerms stubs POST /_matrix/identity/v2/terms.
func (s *Server) AgreeToTerms(ctx context.Context, req gen.AgreeToTermsRequestObject) (gen.AgreeToTermsResponseObject, error) {
	return nil, errNotImplemented
}

// EmailRequestTokenV2 stubs POST /_matrix/identity/v2/validate/email/requestToken.
func (s *Server) EmailRequestTokenV2(ctx context.Context, req gen.EmailRequestTokenV2RequestObject) (gen.EmailRequestTokenV2ResponseObject, error) {
	return nil, errNotImplemented
}

// EmailSubmitTokenGetV2 stubs GET /_matrix/identity/v2/validate/email/submitToken.
func (s *Server) EmailSubmitTokenGetV2(ctx context.Context, req gen.EmailSubmitTokenGetV2RequestObject) (gen.EmailSubmitTokenGetV2ResponseObject, error) {
	return nil, errNotImplemented
}

// EmailSubmitTokenPostV2 stubs POST /_matrix/identity/v2/validate/email/submitToken.
func (s *Server) EmailSubmitTokenPostV2(ctx context.Context, req gen.EmailSubmitTokenPostV2RequestObject) (gen.EmailSubmitTokenPostV2ResponseObject, error) {
	return nil, errNotImplemented
}

// MsisdnRequestTokenV2 stubs POST /_matrix/identity/v2/validate/msisdn/requestToken.
func (s *Server) MsisdnRequestTokenV2(ctx context.Context, req gen.MsisdnRequestTokenV2RequestObject) (gen.MsisdnRequestTokenV2ResponseObject, error) {
	return nil, errNotImplemented
}

// MsisdnSubmitTokenGetV2 stubs GET /_matrix/identity/v2/validate/msisdn/submitToken.
func (s *Server) MsisdnSubmitTokenGetV2(ctx context.Context, req gen.MsisdnSubmitTokenGetV2RequestObject) (gen.MsisdnSubmitTokenGetV2ResponseObject, error) {
	return nil, errNotImplemented
}

// MsisdnSubmitTokenPostV2 stubs POST /_matrix/identity/v2/validate/msisdn/submitToken.
func (s *Server) MsisdnSubmitTokenPostV2(ctx context.Context, req gen.MsisdnSubmitTokenPostV2RequestObject) (gen.MsisdnSubmitTokenPostV2ResponseObject, error) {
	return nil, errNotImplemented
}

// GetVersions stubs GET /_matrix/identity/versions.
func (s *Server) GetVersions(ctx context.Context, req gen.GetVersionsRequestObject) (gen.GetVersionsResponseObject, error) {
	return nil, errNotImplemented
}
