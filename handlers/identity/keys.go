package identity

import (
	"context"
	"fmt"

	"github.com/sigil-matrix/sigil/handlers/signing"
	"github.com/sigil-matrix/sigil/spec/matrixerr"
)

// PublicKey returns the long-term public key with keyID.
func (s *Service) PublicKey(keyID string) (string, error) {
	if keyID != s.key.ID {
		return "", matrixerr.NotFound(fmt.Sprintf("The public key %q was not found", keyID))
	}
	return s.key.PublicBase64(), nil
}

// LongTermKeyValid reports whether pub is our long-term key. It compares
// decoded bytes, so either base64 alphabet and padded or unpadded forms
// are recognised.
func (s *Service) LongTermKeyValid(pub string) bool {
	b, err := signing.DecodeBase64(pub)
	return err == nil && secretEqual(string(b), string(s.key.Public()))
}

// EphemeralKeyValid reports whether pub is the ephemeral key of an invite
// we stored, delivered or not.
func (s *Service) EphemeralKeyValid(ctx context.Context, pub string) (bool, error) {
	ok, err := s.store.EphemeralKeyValid(ctx, pub)
	if err != nil {
		return false, matrixerr.Unknown(fmt.Errorf("ephemeral key: %w", err))
	}
	return ok, nil
}
