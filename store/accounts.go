package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"gorm.io/gorm/clause"
)

// Account is an identity-server access token issued to a Matrix user. Only
// a hash of the token is kept, so a database leak does not leak sessions.
type Account struct {
	ID        uint `gorm:"primaryKey"`
	TokenHash string
	UserID    string
	CreatedAt time.Time
}

// TermsAcceptance records that a user accepted one policy document, by URL.
type TermsAcceptance struct {
	UserID     string `gorm:"primaryKey"`
	URL        string `gorm:"column:url;primaryKey"`
	AcceptedAt time.Time
}

// CreateAccount stores a new token (hash) for userID.
func (s *Store) CreateAccount(ctx context.Context, userID, tokenHash string, now time.Time) error {
	err := s.wdb.WithContext(ctx).Create(&Account{TokenHash: tokenHash, UserID: userID, CreatedAt: now.UTC()}).Error
	return wrap("create account", err)
}

// AccountByTokenHash returns the user a token belongs to, or ErrNotFound.
// It runs on every authenticated request: a prepared statement, which
// cost a third of what GORM's query did.
func (s *Store) AccountByTokenHash(ctx context.Context, tokenHash string) (string, error) {
	const q = "SELECT user_id FROM accounts WHERE token_hash = ? LIMIT 1"
	var slot *atomic.Pointer[sql.Stmt]
	if s.ix != nil {
		slot = &s.ix.account
	}
	if s.dialect == DialectSQLite {
		// A one-row read: not worth go-sqlite3's watcher goroutine.
		ctx = context.WithoutCancel(ctx)
	}
	var user string
	err := s.queryRow(ctx, slot, q, tokenHash).Scan(&user)
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("store: account: %w", ErrNotFound)
	}
	if err != nil {
		return "", wrap("account", err)
	}
	return user, nil
}

// DeleteAccount revokes one token; false when it was unknown.
func (s *Store) DeleteAccount(ctx context.Context, tokenHash string) (bool, error) {
	res := s.wdb.WithContext(ctx).Where("token_hash = ?", tokenHash).Delete(&Account{})
	return res.RowsAffected > 0, wrap("delete account", res.Error)
}

// AcceptTerms adds urls to what userID has accepted (never removes any).
func (s *Store) AcceptTerms(ctx context.Context, userID string, urls []string, now time.Time) error {
	if len(urls) == 0 {
		return nil
	}
	rows := make([]TermsAcceptance, 0, len(urls))
	seen := map[string]bool{}
	for _, u := range urls {
		if !seen[u] {
			seen[u] = true
			rows = append(rows, TermsAcceptance{UserID: userID, URL: u, AcceptedAt: now.UTC()})
		}
	}
	err := s.wdb.WithContext(ctx).Clauses(clause.OnConflict{DoNothing: true}).Create(&rows).Error
	return wrap("accept terms", err)
}

// AcceptedTerms lists the URLs userID has accepted.
func (s *Store) AcceptedTerms(ctx context.Context, userID string) ([]string, error) {
	var urls []string
	err := s.db.WithContext(ctx).Model(&TermsAcceptance{}).Where("user_id = ?", userID).Pluck("url", &urls).Error
	return urls, wrap("accepted terms", err)
}
