package store

import (
	"context"
	"errors"

	"gorm.io/gorm/clause"
)

// Setting returns the value stored under key, or ErrNotFound.
func (s *Store) Setting(ctx context.Context, key string) (string, error) {
	var st Setting
	if err := s.db.WithContext(ctx).Where(clause.Eq{Column: clause.Column{Name: "key"}, Value: key}).Take(&st).Error; err != nil {
		return "", wrap("setting", err)
	}
	return st.Value, nil
}

// SetSetting stores value under key, replacing any previous value.
func (s *Store) SetSetting(ctx context.Context, key, value string) error {
	err := s.wdb.WithContext(ctx).Clauses(clause.OnConflict{
		Columns:   []clause.Column{{Name: "key"}},
		DoUpdates: clause.AssignmentColumns([]string{"value"}),
	}).Create(&Setting{Key: key, Value: value}).Error
	return wrap("set setting", err)
}

// SettingOrInit returns the value stored under key; if there is none it
// stores init() and returns it. Concurrent callers (in this or another
// process) all get the same value: the first stored wins, even if init was
// called by several of them.
func (s *Store) SettingOrInit(ctx context.Context, key string, init func() string) (string, error) {
	v, err := s.Setting(ctx, key)
	if err == nil || !errors.Is(err, ErrNotFound) {
		return v, err
	}
	err = s.wdb.WithContext(ctx).Clauses(clause.OnConflict{
		Columns:   []clause.Column{{Name: "key"}},
		DoNothing: true,
	}).Create(&Setting{Key: key, Value: init()}).Error
	if err != nil {
		return "", wrap("init setting", err)
	}
	// Read through the writer so that, on SQLite, the row just committed on
	// that connection is certainly visible.
	var st Setting
	if err := s.wdb.WithContext(ctx).Where(clause.Eq{Column: clause.Column{Name: "key"}, Value: key}).Take(&st).Error; err != nil {
		return "", wrap("init setting", err)
	}
	return st.Value, nil
}
