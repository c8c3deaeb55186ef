package federation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Destination is where to send federation requests for a server name.
type Destination struct {
	// URL is "https://host:port": the address to connect to.
	URL string
	// Host is the TLS server name and Host header: the server name itself,
	// or the delegated name from .well-known (with its port if it had one).
	Host string
}

const (
	defaultFederationPort = "8448"
	wellKnownDefaultTTL   = 24 * time.Hour
	wellKnownMaxTTL       = 48 * time.Hour
	wellKnownErrorTTL     = 2 * time.Minute
	wellKnownMaxBytes     = 64 << 10
)

// ValidServerName reports whether name is a Matrix server name: a DNS name
// (letters, digits, '-' and '.'), an IPv4 address or a bracketed IPv6
// address, optionally followed by ":port" with port 1-65535. Anything with a
// scheme, path, userinfo, query, whitespace or zone is rejected.
func ValidServerName(name string) bool {
	_, _, _, ok := splitServerName(name)
	return ok
}

// splitServerName returns the host (IPv6 without brackets), the port ("" if
// none), whether host is an IP literal, and whether name is valid.
func splitServerName(name string) (host, port string, isIP, ok bool) {
	if name == "" || len(name) > 255+6 {
		return "", "", false, false
	}
	rest := name
	if strings.HasPrefix(rest, "[") {
		end := strings.IndexByte(rest, ']')
		if end < 0 {
			return "", "", false, false
		}
		ip, err := netip.ParseAddr(rest[1:end])
		if err != nil || !ip.Is6() || ip.Zone() != "" {
			return "", "", false, false
		}
		host, rest, isIP = rest[1:end], rest[end+1:], true
		if rest != "" && rest[0] != ':' {
			return "", "", false, false
		}
	} else {
		h, p, hasPort := strings.Cut(rest, ":")
		host = h
		if hasPort {
			rest = ":" + p
		} else {
			rest = ""
		}
		if !validDNSName(host) {
			return "", "", false, false
		}
		if allDigitsAndDots(host) {
			ip, err := netip.ParseAddr(host)
			if err != nil || !ip.Is4() {
				return "", "", false, false
			}
			isIP = true
		}
	}
	if rest != "" {
		port = rest[1:]
		if !validPort(port) {
			return "", "", false, false
		}
	}
	return host, port, isIP, true
}

func validPort(p string) bool {
	if p == "" || len(p) > 5 {
		return false
	}
	for i := 0; i < len(p); i++ {
		if p[i] < '0' || p[i] > '9' {
			return false
		}
	}
	n, err := strconv.Atoi(p)
	return err == nil && n >= 1 && n <= 65535
}

// validDNSName checks the spec's dns-name (1*255 of [A-Za-z0-9.-]) and,
// beyond the grammar, refuses empty or over-long labels.
func validDNSName(h string) bool {
	if h == "" || len(h) > 255 {
		return false
	}
	for label := range strings.SplitSeq(h, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

func allDigitsAndDots(h string) bool {
	for i := 0; i < len(h); i++ {
		if !(h[i] >= '0' && h[i] <= '9' || h[i] == '.') {
			return false
		}
	}
	return true
}

func httpsURL(host, port string) string {
	return "https://" + net.JoinHostPort(host, port)
}

// Resolve finds where to reach serverName, following the server-server
// spec's "Resolving server names": IP literal (port default 8448); explicit
// port; /.well-known/matrix/server delegation (then IP literal, explicit
// port, SRV _matrix-fed._tcp, SRV _matrix._tcp, or port 8448 of the
// delegated name); SRV _matrix-fed._tcp then _matrix._tcp of serverName;
// finally serverName:8448.
func (c *Client) Resolve(ctx context.Context, serverName string) (Destination, error) {
	host, port, isIP, ok := splitServerName(serverName)
	if !ok {
		return Destination{}, fmt.Errorf("resolve %q: %w", serverName, ErrInvalidServerName)
	}
	if isIP {
		if port == "" {
			port = defaultFederationPort
		}
		return Destination{URL: httpsURL(host, port), Host: serverName}, nil
	}
	if port != "" {
		return Destination{URL: httpsURL(host, port), Host: serverName}, nil
	}

	delegated, found, err := c.lookupWellKnown(ctx, host)
	if err != nil {
		return Destination{}, fmt.Errorf("resolve %s: %w: %w", serverName, ErrUnreachable, err)
	}
	if found {
		dhost, dport, dIsIP, _ := splitServerName(delegated) // validated when fetched
		if dIsIP || dport != "" {
			if dport == "" {
				dport = defaultFederationPort
			}
			return Destination{URL: httpsURL(dhost, dport), Host: delegated}, nil
		}
		return c.resolveSRV(ctx, serverName, dhost)
	}
	return c.resolveSRV(ctx, serverName, host)
}

// resolveSRV finishes discovery for a hostname without port: SRV records,
// then port 8448. The Host stays the hostname whatever SRV says.
func (c *Client) resolveSRV(ctx context.Context, serverName, host string) (Destination, error) {
	for _, service := range []string{"matrix-fed", "matrix"} {
		_, addrs, err := c.srv(ctx, service, "tcp", host)
		if ctx.Err() != nil {
			return Destination{}, fmt.Errorf("resolve %s: %w: %w", serverName, ErrUnreachable, ctx.Err())
		}
		// LookupSRV may return usable records together with an error
		// about filtered ones, so look at the records first.
		for _, a := range addrs {
			target := strings.TrimSuffix(a.Target, ".")
			if target == "" || a.Port == 0 { // "." means "service not available here"
				continue
			}
			c.log.Debug("federation: SRV", "server", serverName, "service", "_"+service+"._tcp."+host, "target", target, "port", a.Port)
			return Destination{URL: httpsURL(target, strconv.Itoa(int(a.Port))), Host: host}, nil
		}
		if err != nil {
			c.log.Debug("federation: SRV lookup failed", "server", serverName, "service", service, "err", err)
		}
	}
	return Destination{URL: httpsURL(host, defaultFederationPort), Host: host}, nil
}

func (c *Client) srv(ctx context.Context, service, proto, name string) (string, []*net.SRV, error) {
	if c.lookupSRV != nil {
		return c.lookupSRV(ctx, service, proto, name)
	}
	return c.opts.Resolver.LookupSRV(ctx, service, proto, name)
}

type wellKnownEntry struct {
	server  string // delegated server name; "" when there is no valid delegation
	expires time.Time
}

// lookupWellKnown returns the m.server delegation of host, using the cache.
// A missing or invalid .well-known is not an error (found=false); err is
// only set when ctx ends first.
func (c *Client) lookupWellKnown(ctx context.Context, host string) (server string, found bool, err error) {
	key := strings.ToLower(host)
	c.mu.Lock()
	e, ok := c.wellKnown[key]
	c.mu.Unlock()
	if ok && c.now().Before(e.expires) {
		return e.server, e.server != "", nil
	}
	// The fetch runs detached from any one caller so that a caller giving
	// up neither fails the others nor poisons the cache.
	ch := c.flight.DoChan("wk\x00"+key, func() (any, error) {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.opts.Timeout/2)
		defer cancel()
		server, ttl, ferr := c.fetchWellKnown(fctx, host)
		if ferr != nil {
			c.log.Debug("federation: no usable .well-known", "host", host, "err", ferr)
			server, ttl = "", wellKnownErrorTTL
		}
		if ttl > 0 {
			c.mu.Lock()
			now := c.now()
			putBounded(c.wellKnown, key, wellKnownEntry{server: server, expires: now.Add(ttl)},
				func(e wellKnownEntry) bool { return !now.Before(e.expires) })
			c.mu.Unlock()
		}
		return server, nil
	})
	select {
	case r := <-ch:
		s := r.Val.(string)
		return s, s != "", nil
	case <-ctx.Done():
		return "", false, ctx.Err()
	}
}

// fetchWellKnown GETs https://host/.well-known/matrix/server and returns the
// validated m.server and how long to cache it.
func (c *Client) fetchWellKnown(ctx context.Context, host string) (string, time.Duration, error) {
	authority := host
	if c.wellKnownPort != "" {
		authority = net.JoinHostPort(host, c.wellKnownPort)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+authority+"/.well-known/matrix/server", nil)
	if err != nil {
		return "", 0, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.wk.Do(req)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", 0, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	var body struct {
		Server *string `json:"m.server"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(nil, resp.Body, wellKnownMaxBytes))
	if err := dec.Decode(&body); err != nil {
		return "", 0, fmt.Errorf("bad JSON: %w", err)
	}
	if body.Server == nil {
		return "", 0, errors.New(`no "m.server"`)
	}
	if !ValidServerName(*body.Server) {
		return "", 0, fmt.Errorf(`invalid "m.server" %q`, *body.Server)
	}
	return *body.Server, cacheTTL(resp.Header.Get("Cache-Control")), nil
}

// cacheTTL reads max-age from Cache-Control: default 24h, capped at 48h,
// zero for no-store/no-cache.
func cacheTTL(cc string) time.Duration {
	ttl := wellKnownDefaultTTL
	for d := range strings.SplitSeq(cc, ",") {
		d = strings.ToLower(strings.TrimSpace(d))
		switch {
		case d == "no-store" || d == "no-cache":
			return 0
		case strings.HasPrefix(d, "max-age="):
			n, err := strconv.ParseInt(strings.Trim(d[len("max-age="):], `"`), 10, 64)
			if err == nil && n >= 0 {
				ttl = time.Duration(min(n, int64(wellKnownMaxTTL/time.Second))) * time.Second
			}
		}
	}
	return min(ttl, wellKnownMaxTTL)
}
