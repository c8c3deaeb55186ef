package main

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sigil-matrix/sigil/handlers/identity"
	"github.com/sigil-matrix/sigil/handlers/signing"
)

// sydentConfig is what import-sydent needs from a sydent.conf.
type sydentConfig struct {
	ServerName string
	DBFile     string
	Key        signing.Key
}

// readINI reads the sections of an INI file as Python's ConfigParser
// writes them: "[section]", "key = value" or "key: value", comments
// starting with # or ;. Keys are case-insensitive.
func readINI(r io.Reader) (map[string]map[string]string, error) {
	out := map[string]map[string]string{}
	section := ""
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
			continue
		case line[0] == '[' && line[len(line)-1] == ']':
			section = strings.TrimSpace(line[1 : len(line)-1])
			if out[section] == nil {
				out[section] = map[string]string{}
			}
			continue
		}
		i := strings.IndexAny(line, "=:")
		if i < 0 || section == "" {
			return nil, fmt.Errorf("line %d: not \"key = value\" inside a [section]", n)
		}
		out[section][strings.ToLower(strings.TrimSpace(line[:i]))] = strings.TrimSpace(line[i+1:])
	}
	return out, sc.Err()
}

// parseSydentConfig reads server.name, db.file and ed25519.signingkey.
func parseSydentConfig(path string) (sydentConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return sydentConfig{}, err
	}
	ini, err := readINI(bytes.NewReader(data))
	if err != nil {
		return sydentConfig{}, fmt.Errorf("%s: %w", path, err)
	}
	sc := sydentConfig{ServerName: ini["general"]["server.name"], DBFile: ini["db"]["db.file"]}
	if sc.ServerName == "" {
		return sc, fmt.Errorf("%s: no server.name in [general]: Sydent then signs as the machine's hostname; "+
			"add the name it used", path)
	}
	if sc.DBFile != "" && !filepath.IsAbs(sc.DBFile) {
		sc.DBFile = filepath.Join(filepath.Dir(path), sc.DBFile)
	}
	sc.Key, err = parseSydentKey(ini["crypto"]["ed25519.signingkey"])
	if err != nil {
		return sc, fmt.Errorf("%s: [crypto] ed25519.signingkey: %w", path, err)
	}
	return sc, nil
}

// parseSydentKey reads "ed25519 <version> <unpadded base64 seed>", or the
// old single hex seed (version 0), as Sydent's crypto config does.
func parseSydentKey(s string) (signing.Key, error) {
	parts := strings.Fields(s)
	switch len(parts) {
	case 3:
		if parts[0] != "ed25519" {
			return signing.Key{}, fmt.Errorf("algorithm %q, want ed25519", parts[0])
		}
		return signing.KeyFromSeed("ed25519:"+parts[1], parts[2])
	case 1:
		seed, err := hex.DecodeString(parts[0])
		if err != nil || len(seed) != 32 {
			return signing.Key{}, errors.New("neither \"ed25519 VERSION SEED\" nor a 64-digit hex seed")
		}
		return signing.KeyFromSeed("ed25519:0", signing.EncodeBase64(seed))
	case 0:
		return signing.Key{}, errors.New("empty: this Sydent never made a key, so nothing it signed can be kept")
	}
	return signing.Key{}, errors.New("want \"ed25519 VERSION SEED\"")
}

// installKey makes k Sigil's signing key at path. An existing different
// key is replaced only with replace (and kept beside it).
func installKey(path string, k signing.Key, replace bool) (string, error) {
	data, err := signing.FormatKeyFile(k)
	if err != nil {
		return "", err
	}
	old, err := signing.LoadKeyFile(path)
	switch {
	case err == nil && old.ID == k.ID && bytes.Equal(old.Private, k.Private):
		return "already installed", nil
	case err == nil && !replace:
		return "", usagef("%s already holds another key (%s %s): give -replace-key to replace it with Sydent's "+
			"(the current one is kept beside it; what it signed can no longer be checked by homeservers, so only "+
			"replace the key of a server nobody has used yet)", path, old.ID, old.PublicBase64())
	case err == nil:
		backup := fmt.Sprintf("%s.replaced-%d", path, time.Now().Unix())
		if err := os.Rename(path, backup); err != nil {
			return "", err
		}
	case !errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("signing key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("signing key: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	return "installed at " + path, nil
}

// progress draws a bar on a terminal and a line per tenth elsewhere.
type progress struct {
	w           io.Writer
	what        string
	total, done int
	tty         bool
	start, last time.Time
	tenth       int
}

func newProgress(w io.Writer, what string, total int) *progress {
	tty := false
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	return &progress{w: w, what: what, total: total, tty: tty, start: time.Now()}
}

func (p *progress) add(n int) {
	p.done += n
	pct := 100
	if p.total > 0 {
		pct = min(100, p.done*100/p.total)
	}
	if p.tty {
		if time.Since(p.last) < 100*time.Millisecond && p.done < p.total {
			return
		}
		p.last = time.Now()
		bar := strings.Repeat("=", pct/4) + strings.Repeat(" ", 25-pct/4)
		fmt.Fprintf(p.w, "\r%-9s [%s] %3d%% %d/%d", p.what, bar, pct, p.done, p.total)
		return
	}
	if t := pct / 10; t > p.tenth || p.done == p.total {
		p.tenth = t
		fmt.Fprintf(p.w, "%s: %d/%d (%d%%) %s\n", p.what, p.done, p.total, pct, time.Since(p.start).Round(time.Millisecond))
	}
}

func (p *progress) finish() {
	if p.tty {
		fmt.Fprintln(p.w)
	}
}

func cmdImportSydent(c *cli, fs *flag.FlagSet) func(context.Context, []string) error {
	confPath := fs.String("sydent-config", "", "Sydent's configuration (sydent.conf): server name, signing key, database")
	dbPath := fs.String("sydent-db", "", "Sydent's SQLite database (default: db.file of the configuration)")
	replaceKey := fs.Bool("replace-key", false, "replace a different signing key already at signing_key (kept beside it)")
	batch := fs.Int("batch", 2000, "bindings per transaction")
	return func(ctx context.Context, args []string) error {
		if err := noArgs(args); err != nil {
			return err
		}
		if *confPath == "" {
			return usagef("-sydent-config is required: the signing key and server name come from it")
		}
		sc, err := parseSydentConfig(*confPath)
		if err != nil {
			return err
		}
		if *dbPath != "" {
			sc.DBFile = *dbPath
		}
		if sc.DBFile == "" {
			return usagef("no db.file in %s: give -sydent-db", *confPath)
		}
		if c.cfg.ServerName != sc.ServerName {
			return usagef("server_name is %q but Sydent signed as %q: set server_name: %s (homeservers look "+
				"signatures up under that name), then import", c.cfg.ServerName, sc.ServerName, sc.ServerName)
		}
		if _, err := os.Stat(sc.DBFile); err != nil {
			return fmt.Errorf("sydent database: %w", err)
		}
		src, err := sql.Open("sqlite3", "file:"+sc.DBFile+"?mode=ro")
		if err != nil {
			return fmt.Errorf("sydent database: %w", err)
		}
		defer src.Close()
		if err := src.PingContext(ctx); err != nil {
			return fmt.Errorf("sydent database: %w", err)
		}
		how, err := installKey(c.cfg.SigningKey, sc.Key, *replaceKey)
		if err != nil {
			return err
		}
		fmt.Fprintf(c.out, "signing key %s (public %s): %s\n", sc.Key.ID, sc.Key.PublicBase64(), how)
		a, err := openApp(ctx, c.cfg, c.log, false)
		if err != nil {
			return err
		}
		defer a.Close()
		start := time.Now()
		im := sydentImport{src: src, id: a.identity, serverName: sc.ServerName, progress: c.err, batch: max(1, *batch)}
		b, err := im.bindings(ctx)
		if err != nil {
			return err
		}
		inv, err := im.invites(ctx)
		if err != nil {
			return err
		}
		keys, err := im.ephemeralKeys(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(c.out, "bindings:       %d imported (%d signed again), %d already there\n", b.Imported, b.Resigned, b.Existing)
		fmt.Fprintf(c.out, "invites:        %d imported, %d already there (pending only)\n", inv.Imported, inv.Existing)
		fmt.Fprintf(c.out, "ephemeral keys: %d imported, %d already there\n", keys.Imported, keys.Existing)
		fmt.Fprintf(c.out, "done in %s; server_name %s, key %s\n", time.Since(start).Round(time.Millisecond), sc.ServerName, sc.Key.ID)
		return nil
	}
}

type sydentImport struct {
	src        *sql.DB
	id         *identity.Service
	serverName string
	progress   io.Writer
	batch      int
}

// bindings imports local_threepid_associations (those still bound), each
// with the signed association Sydent published for it, which its local
// push stored in global_threepid_associations under its own name.
func (im sydentImport) bindings(ctx context.Context) (identity.ImportCounts, error) {
	var total identity.ImportCounts
	var n int
	if err := im.src.QueryRowContext(ctx, `SELECT COUNT(*) FROM local_threepid_associations WHERE mxid IS NOT NULL`).Scan(&n); err != nil {
		return total, fmt.Errorf("sydent bindings: %w", err)
	}
	rows, err := im.src.QueryContext(ctx, `SELECT l.medium, l.address, l.mxid, l.ts, l.notBefore, l.notAfter, g.sgAssoc
		FROM local_threepid_associations l
		LEFT JOIN global_threepid_associations g ON g.originServer = ? AND g.originId = l.id
		WHERE l.mxid IS NOT NULL ORDER BY l.id`, im.serverName)
	if err != nil {
		return total, fmt.Errorf("sydent bindings: %w", err)
	}
	defer rows.Close()
	bar := newProgress(im.progress, "bindings", n)
	defer bar.finish()
	var buf []identity.ImportedBinding
	flush := func() error {
		if len(buf) == 0 {
			return nil
		}
		c, err := im.id.ImportBindings(ctx, buf)
		if err != nil {
			return err
		}
		total.Imported += c.Imported
		total.Existing += c.Existing
		total.Resigned += c.Resigned
		bar.add(len(buf))
		buf = buf[:0]
		return nil
	}
	for rows.Next() {
		var b identity.ImportedBinding
		var ts, nb, na sql.NullInt64
		var sg sql.NullString
		if err := rows.Scan(&b.Medium, &b.Address, &b.MXID, &ts, &nb, &na, &sg); err != nil {
			return total, fmt.Errorf("sydent bindings: %w", err)
		}
		b.TS, b.NotBefore, b.NotAfter, b.Signed = ts.Int64, nb.Int64, na.Int64, []byte(sg.String)
		buf = append(buf, b)
		if len(buf) >= im.batch {
			if err := flush(); err != nil {
				return total, err
			}
		}
	}
	if err := rows.Err(); err != nil {
		return total, fmt.Errorf("sydent bindings: %w", err)
	}
	return total, flush()
}

// invites imports the invites Sydent has not delivered yet (sent_ts NULL).
func (im sydentImport) invites(ctx context.Context) (identity.ImportCounts, error) {
	rows, err := im.src.QueryContext(ctx, `SELECT medium, address, room_id, sender, token, received_ts
		FROM invite_tokens WHERE sent_ts IS NULL ORDER BY id`)
	if err != nil {
		return identity.ImportCounts{}, fmt.Errorf("sydent invites: %w", err)
	}
	defer rows.Close()
	var in []identity.ImportedInvite
	for rows.Next() {
		var i identity.ImportedInvite
		var received sql.NullInt64
		if err := rows.Scan(&i.Medium, &i.Address, &i.RoomID, &i.Sender, &i.Token, &received); err != nil {
			return identity.ImportCounts{}, fmt.Errorf("sydent invites: %w", err)
		}
		if received.Valid {
			i.ReceivedAt = time.UnixMilli(received.Int64)
		}
		in = append(in, i)
	}
	if err := rows.Err(); err != nil {
		return identity.ImportCounts{}, fmt.Errorf("sydent invites: %w", err)
	}
	return im.id.ImportInvites(ctx, in)
}

func (im sydentImport) ephemeralKeys(ctx context.Context) (identity.ImportCounts, error) {
	rows, err := im.src.QueryContext(ctx, `SELECT public_key FROM ephemeral_public_keys ORDER BY id`)
	if err != nil {
		return identity.ImportCounts{}, fmt.Errorf("sydent ephemeral keys: %w", err)
	}
	defer rows.Close()
	var keys []string
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			return identity.ImportCounts{}, fmt.Errorf("sydent ephemeral keys: %w", err)
		}
		keys = append(keys, k)
	}
	if err := rows.Err(); err != nil {
		return identity.ImportCounts{}, fmt.Errorf("sydent ephemeral keys: %w", err)
	}
	return im.id.ImportEphemeralKeys(ctx, keys)
}
