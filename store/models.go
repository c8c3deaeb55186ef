package store

import "time"

// The models below describe the current schema. They are used for queries
// only: the schema itself is created by the frozen structs in migrations.go,
// so changing a model here requires a new migration there.

// Session is a 3PID validation session (requestToken / submitToken).
type Session struct {
	ID           uint   `gorm:"primaryKey"`
	SID          string `gorm:"column:sid;size:255;not null;uniqueIndex:idx_sessions_sid"`
	Medium       string `gorm:"not null;uniqueIndex:idx_sessions_3pid_secret,priority:1"`
	Address      string `gorm:"not null;uniqueIndex:idx_sessions_3pid_secret,priority:2"`
	ClientSecret string `gorm:"not null;uniqueIndex:idx_sessions_3pid_secret,priority:3"`
	// Token is the secret token sent by email/SMS.
	Token       string `gorm:"not null"`
	SendAttempt int    `gorm:"not null"`
	NextLink    string `gorm:"not null"`
	CreatedAt   time.Time
	// ModifiedAt is when the session was last created or validated; the
	// session lifetime counts from it.
	ModifiedAt  time.Time `gorm:"not null;index:idx_sessions_modified_at"`
	ValidatedAt *time.Time
}

// SessionRequest is the input of RequestSession.
type SessionRequest struct {
	Medium, Address, ClientSecret string
	SendAttempt                   int
	NextLink                      string
	// NewSID and NewToken are used only if a session is (re)created.
	NewSID, NewToken string
	Now              time.Time
	// Replace reports whether the existing session must be replaced by a
	// new one (the caller's expiry rule); nil never replaces.
	Replace func(Session) bool
}

// Association is a published 3PID → MXID binding.
type Association struct {
	ID uint `gorm:"primaryKey"`
	// Medium and Address are unique together; Address is canonical
	// (case-folded) as given by the caller.
	Medium  string `gorm:"not null;uniqueIndex:idx_associations_3pid,priority:1"`
	Address string `gorm:"not null;uniqueIndex:idx_associations_3pid,priority:2"`
	MXID    string `gorm:"column:mxid;not null;index:idx_associations_mxid"`
	// TS, NotBefore and NotAfter are Unix milliseconds.
	TS        int64 `gorm:"column:ts;not null"`
	NotBefore int64 `gorm:"not null"`
	NotAfter  int64 `gorm:"not null"`
	// Signed is the signed association JSON exactly as served by lookup.
	Signed []byte
	// LookupHash is the sha256 lookup hash under the current pepper.
	LookupHash string `gorm:"not null;index:idx_associations_lookup_hash"`
	CreatedAt  time.Time
}

// ThreePID identifies a third-party identifier.
type ThreePID struct{ Medium, Address string }

// Invite is a stored third-party room invite.
type Invite struct {
	ID      uint   `gorm:"primaryKey"`
	Token   string `gorm:"size:255;not null;uniqueIndex:idx_invites_token"`
	Medium  string `gorm:"not null;index:idx_invites_3pid,priority:1"`
	Address string `gorm:"not null;index:idx_invites_3pid,priority:2"`
	RoomID  string `gorm:"not null"`
	Sender  string `gorm:"not null"`
	// EphemeralPublicKey is unpadded base64 exactly as returned to the client.
	EphemeralPublicKey  string `gorm:"not null;index:idx_invites_ephemeral_public_key"`
	EphemeralPrivateKey string `gorm:"not null"`
	// Params is the JSON of all request parameters.
	Params    []byte
	CreatedAt time.Time
	// DeliveredAt is set once the invite has been delivered to a homeserver
	// via onbind.
	DeliveredAt *time.Time
}

// Setting is a key/value pair (e.g. the lookup pepper).
type Setting struct {
	Key   string `gorm:"primaryKey;size:255"`
	Value string `gorm:"not null"`
}
