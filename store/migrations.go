package store

import (
	"fmt"
	"time"

	"github.com/go-gormigrate/gormigrate/v2"
	"gorm.io/gorm"
)

// migrationsTable records the IDs of the applied migrations.
const migrationsTable = "schema_migrations"

// migrateLockKey is the PostgreSQL advisory lock that serialises concurrent
// migrators (e.g. several replicas starting at once).
const migrateLockKey int64 = 0x5369_6769_6c00 // "Sigil\0"

// migrations is the ordered list of schema migrations. Each declares its own
// frozen copies of the models it creates, so later changes to models.go never
// alter what an old migration does. Never edit or reorder an applied
// migration: append a new one.
func migrations() []*gormigrate.Migration {
	return []*gormigrate.Migration{
		{
			ID: "0001_initial",
			Migrate: func(tx *gorm.DB) error {
				type Session struct {
					ID           uint       `gorm:"primaryKey"`
					SID          string     `gorm:"column:sid;size:255;not null;uniqueIndex:idx_sessions_sid"`
					Medium       string     `gorm:"not null;uniqueIndex:idx_sessions_3pid_secret,priority:1"`
					Address      string     `gorm:"not null;uniqueIndex:idx_sessions_3pid_secret,priority:2"`
					ClientSecret string     `gorm:"not null;uniqueIndex:idx_sessions_3pid_secret,priority:3"`
					Token        string     `gorm:"not null"`
					SendAttempt  int        `gorm:"not null"`
					NextLink     string     `gorm:"not null"`
					CreatedAt    time.Time  `gorm:"not null"`
					ModifiedAt   time.Time  `gorm:"not null;index:idx_sessions_modified_at"`
					ValidatedAt  *time.Time ``
				}
				type Association struct {
					ID         uint      `gorm:"primaryKey"`
					Medium     string    `gorm:"not null;uniqueIndex:idx_associations_3pid,priority:1"`
					Address    string    `gorm:"not null;uniqueIndex:idx_associations_3pid,priority:2"`
					MXID       string    `gorm:"column:mxid;not null;index:idx_associations_mxid"`
					TS         int64     `gorm:"column:ts;not null"`
					NotBefore  int64     `gorm:"not null"`
					NotAfter   int64     `gorm:"not null"`
					Signed     []byte    ``
					LookupHash string    `gorm:"not null;index:idx_associations_lookup_hash"`
					CreatedAt  time.Time `gorm:"not null"`
				}
				return tx.Migrator().CreateTable(&Session{}, &Association{})
			},
			Rollback: func(tx *gorm.DB) error {
				return tx.Migrator().DropTable("associations", "sessions")
			},
		},
		{
			ID: "0002_invites",
			Migrate: func(tx *gorm.DB) error {
				type Invite struct {
					ID                  uint       `gorm:"primaryKey"`
					Token               string     `gorm:"size:255;not null;uniqueIndex:idx_invites_token"`
					Medium              string     `gorm:"not null;index:idx_invites_3pid,priority:1"`
					Address             string     `gorm:"not null;index:idx_invites_3pid,priority:2"`
					RoomID              string     `gorm:"not null"`
					Sender              string     `gorm:"not null"`
					EphemeralPublicKey  string     `gorm:"not null;index:idx_invites_ephemeral_public_key"`
					EphemeralPrivateKey string     `gorm:"not null"`
					Params              []byte     ``
					CreatedAt           time.Time  `gorm:"not null"`
					DeliveredAt         *time.Time ``
				}
				return tx.Migrator().CreateTable(&Invite{})
			},
			Rollback: func(tx *gorm.DB) error {
				return tx.Migrator().DropTable("invites")
			},
		},
		{
			ID: "0003_settings",
			Migrate: func(tx *gorm.DB) error {
				type Setting struct {
					Key   string `gorm:"primaryKey;size:255"`
					Value string `gorm:"not null"`
				}
				return tx.Migrator().CreateTable(&Setting{})
			},
			Rollback: func(tx *gorm.DB) error {
				return tx.Migrator().DropTable("settings")
			},
		},
		{
			ID: "0004_accounts",
			Migrate: func(tx *gorm.DB) error {
				type Account struct {
					ID        uint      `gorm:"primaryKey"`
					TokenHash string    `gorm:"size:64;not null;uniqueIndex:idx_accounts_token_hash"`
					UserID    string    `gorm:"not null;index:idx_accounts_user_id"`
					CreatedAt time.Time `gorm:"not null"`
				}
				type TermsAcceptance struct {
					UserID     string    `gorm:"primaryKey;size:255"`
					URL        string    `gorm:"column:url;primaryKey;size:1024"`
					AcceptedAt time.Time `gorm:"not null"`
				}
				return tx.Migrator().CreateTable(&Account{}, &TermsAcceptance{})
			},
			Rollback: func(tx *gorm.DB) error {
				return tx.Migrator().DropTable("terms_acceptances", "accounts")
			},
		},
		{
			ID: "0005_onbind",
			Migrate: func(tx *gorm.DB) error {
				type OnbindDelivery struct { // table onbind_deliveries
					ID            uint       `gorm:"primaryKey"`
					MXID          string     `gorm:"column:mxid;not null"`
					Medium        string     `gorm:"not null"`
					Address       string     `gorm:"not null"`
					Payload       []byte     `gorm:"not null"`
					Attempts      int        `gorm:"not null"`
					NextAttemptAt time.Time  `gorm:"not null;index:idx_onbind_deliveries_due"`
					LastError     string     `gorm:"not null"`
					CreatedAt     time.Time  `gorm:"not null"`
					DeliveredAt   *time.Time ``
					FailedAt      *time.Time ``
				}
				// The delivery that claimed the invite; NULL while pending.
				type Invite struct {
					OnbindDeliveryID *uint `gorm:"index:idx_invites_onbind_delivery_id"`
				}
				if err := tx.Migrator().CreateTable(&OnbindDelivery{}); err != nil {
					return err
				}
				if err := tx.Migrator().AddColumn(&Invite{}, "OnbindDeliveryID"); err != nil {
					return err
				}
				return tx.Migrator().CreateIndex(&Invite{}, "idx_invites_onbind_delivery_id")
			},
			Rollback: func(tx *gorm.DB) error {
				type Invite struct {
					OnbindDeliveryID *uint `gorm:"index:idx_invites_onbind_delivery_id"`
				}
				if err := tx.Migrator().DropIndex(&Invite{}, "idx_invites_onbind_delivery_id"); err != nil {
					return err
				}
				if err := tx.Migrator().DropColumn(&Invite{}, "OnbindDeliveryID"); err != nil {
					return err
				}
				return tx.Migrator().DropTable("onbind_deliveries")
			},
		},
		{
			// Ephemeral public keys of invites made before a move from
			// Sydent, which stores them apart from its invites: homeservers
			// still ask whether they are valid.
			ID: "0006_imported_ephemeral_keys",
			Migrate: func(tx *gorm.DB) error {
				type ImportedEphemeralKey struct {
					PublicKey string    `gorm:"primaryKey;size:255"`
					CreatedAt time.Time `gorm:"not null"`
				}
				return tx.Migrator().CreateTable(&ImportedEphemeralKey{})
			},
			Rollback: func(tx *gorm.DB) error {
				return tx.Migrator().DropTable("imported_ephemeral_keys")
			},
		},
		{
			// The purge (purge.go) finds old rows by these columns.
			ID: "0007_purge_indexes",
			Migrate: func(tx *gorm.DB) error {
				for _, q := range []string{
					"CREATE INDEX idx_invites_created_at ON invites (created_at)",
					"CREATE INDEX idx_onbind_deliveries_delivered_at ON onbind_deliveries (delivered_at)",
					"CREATE INDEX idx_onbind_deliveries_failed_at ON onbind_deliveries (failed_at)",
				} {
					if err := tx.Exec(q).Error; err != nil {
						return err
					}
				}
				return nil
			},
			Rollback: func(tx *gorm.DB) error {
				for _, ix := range []string{"idx_invites_created_at", "idx_onbind_deliveries_delivered_at", "idx_onbind_deliveries_failed_at"} {
					if err := tx.Exec("DROP INDEX " + ix).Error; err != nil {
						return err
					}
				}
				return nil
			},
		},
	}
}

// migrateTo applies migrations up to and including id ("" means all), in one
// transaction (both SQLite and PostgreSQL have transactional DDL). On SQLite
// the transaction is BEGIN IMMEDIATE, and on PostgreSQL an advisory lock is
// taken, so concurrent migrators wait for each other. A database that has a
// migration this binary does not know (i.e. a newer schema) is refused.
func migrateTo(db *gorm.DB, id string) error {
	return db.Transaction(func(tx *gorm.DB) error {
		if tx.Dialector.Name() == "postgres" {
			if err := tx.Exec("SELECT pg_advisory_xact_lock(?)", migrateLockKey).Error; err != nil {
				return fmt.Errorf("lock: %w", err)
			}
		}
		m := gormigrate.New(tx, &gormigrate.Options{
			TableName:                 migrationsTable,
			IDColumnName:              "id",
			IDColumnSize:              255,
			UseTransaction:            false, // we already are in one
			ValidateUnknownMigrations: true,
		}, migrations())
		if id == "" {
			return m.Migrate()
		}
		return m.MigrateTo(id)
	})
}
