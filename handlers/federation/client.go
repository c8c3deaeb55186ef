// Package federation is Sigil's outbound side towards Matrix homeservers:
// an HTTP client that refuses private and otherwise non-public targets (SSRF
// guard), server-name discovery (.well-known, SRV), fetching and caching of
// homeserver signing keys, verification of X-Matrix signed requests (the
// homeserver-signed /3pid/unbind), the OpenID userinfo exchange and the
// onbind callback.
package federation

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sync/singleflight"
)

var (
	// ErrForbiddenAddress reports a target whose IP address is loopback,
	// private, link-local, unspecified, multicast, CGNAT, ULA or otherwise
	// not a public unicast address, while ClientOptions.AllowPrivate is off.
	ErrForbiddenAddress = errors.New("federation: destination address is forbidden")
	// ErrResponseTooLarge reports a response body over MaxResponseBytes.
	ErrResponseTooLarge = errors.New("federation: response body too large")
	// ErrUnreachable reports that a remote server could not be talked to:
	// network failure, timeout, refused address, or a 5xx answer. Callers
	// usually map it to a 5xx of their own rather than to 403.
	ErrUnreachable = errors.New("federation: server unreachable")
	// ErrUnresolvable reports a server name that does not exist in the
	// DNS (NXDOMAIN, or no address): the name is wrong, not the server
	// down. It also matches ErrUnreachable.
	ErrUnresolvable = errors.New("federation: server name does not resolve")
	// ErrInvalidServerName reports a malformed Matrix server name.
	ErrInvalidServerName = errors.New("federation: invalid server name")
	// ErrInvalidResponse reports a remote answer that is not what the
	// protocol requires (bad JSON, missing fields, wrong server, bad
	// self-signature, foreign user ID).
	ErrInvalidResponse = errors.New("federation: invalid response")
	// ErrUnknownToken reports that the homeserver did not recognise an
	// OpenID access token (HTTP 401 from userinfo).
	ErrUnknownToken = errors.New("federation: unknown OpenID token")
	// ErrMissingAuth reports a request without an X-Matrix Authorization
	// header.
	ErrMissingAuth = errors.New("federation: missing X-Matrix authorization")
	// ErrBadSignature reports an X-Matrix header that is malformed, names an
	// unknown key, or whose signature does not verify.
	ErrBadSignature = errors.New("federation: bad X-Matrix signature")
)

// StatusError is a non-success HTTP status from a remote server. A 5xx
// status also matches ErrUnreachable with errors.Is.
type StatusError struct {
	StatusCode int
	Errcode    string // Matrix errcode from the body, if any
	Message    string // Matrix error text from the body, if any
}

func (e *StatusError) Error() string {
	s := fmt.Sprintf("HTTP %d %s", e.StatusCode, http.StatusText(e.StatusCode))
	if e.Errcode != "" {
		s += " " + e.Errcode
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// Is makes a 5xx StatusError match ErrUnreachable.
func (e *StatusError) Is(target error) bool {
	return target == ErrUnreachable && e.StatusCode >= 500
}

// ClientOptions configures NewClient. The zero value is a safe production
// configuration.
type ClientOptions struct {
	// AllowPrivate allows loopback/private/link-local/unspecified/multicast/
	// CGNAT/ULA and other non-public targets. Only tests and closed
	// deployments should set it.
	AllowPrivate bool
	// Timeout bounds a whole call (discovery plus request); default 10s.
	Timeout time.Duration
	// MaxResponseBytes caps response bodies; default 1 MiB. Larger bodies
	// fail with ErrResponseTooLarge.
	MaxResponseBytes int64
	// TLSConfig is the client TLS configuration, e.g. with RootCAs trusting
	// a test homeserver. Default: system roots.
	TLSConfig *tls.Config
	// Resolver is used for SRV and address lookups; default net.DefaultResolver.
	Resolver *net.Resolver
	// UserAgent is sent on every request; default "Sigil".
	UserAgent string
	// Logger receives debug messages; default slog.Default().
	Logger *slog.Logger
}

const (
	defaultTimeout          = 10 * time.Second
	defaultMaxResponseBytes = 1 << 20
	defaultUserAgent        = "Sigil"
	maxRedirects            = 5
)

// Client talks to homeservers. It is safe for concurrent use.
type Client struct {
	opts ClientOptions
	log  *slog.Logger

	fed   *http.Client // federation calls: never follows redirects, honours dial targets
	plain *http.Client // HTTP(): follows redirects (every hop is dial-guarded)
	wk    *http.Client // .well-known: follows redirects

	// Test hooks; nil means the real implementation.
	lookupIP      func(ctx context.Context, host string) ([]netip.Addr, error)
	lookupSRV     func(ctx context.Context, service, proto, name string) (string, []*net.SRV, error)
	now           func() time.Time
	forbidden     func(netip.Addr) bool // address policy when AllowPrivate is off
	wellKnownPort string                // "" means 443

	flight singleflight.Group

	mu        sync.Mutex
	wellKnown map[string]wellKnownEntry
	keys      map[string]keyEntry
}

// maxCacheEntries bounds the .well-known and key caches: a caller can make
// us look up any number of server names.
const maxCacheEntries = 10_000

// putBounded stores k in m, first making room when m is full: expired
// entries go, and failing that an arbitrary one (a refetch, never a
// wrong answer). Inserts follow a network fetch, so the scan is cheap
// next to what caused it.
func putBounded[K comparable, V any](m map[K]V, k K, v V, expired func(V) bool) {
	if _, ok := m[k]; !ok && len(m) >= maxCacheEntries {
		for key, old := range m {
			if expired(old) {
				delete(m, key)
			}
		}
		for key := range m {
			if len(m) < maxCacheEntries {
				break
			}
			delete(m, key)
		}
	}
	m[k] = v
}

// NewClient returns a client configured by o.
func NewClient(o ClientOptions) *Client {
	if o.Timeout <= 0 {
		o.Timeout = defaultTimeout
	}
	if o.MaxResponseBytes <= 0 {
		o.MaxResponseBytes = defaultMaxResponseBytes
	}
	if o.UserAgent == "" {
		o.UserAgent = defaultUserAgent
	}
	if o.Resolver == nil {
		o.Resolver = net.DefaultResolver
	}
	c := &Client{
		opts:      o,
		log:       o.Logger,
		now:       time.Now,
		forbidden: ForbiddenIP,
		wellKnown: make(map[string]wellKnownEntry),
		keys:      make(map[string]keyEntry),
	}
	if c.log == nil {
		c.log = slog.Default()
	}
	noRedirect := func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	c.fed = &http.Client{Transport: c.newTransport(), Timeout: o.Timeout, CheckRedirect: noRedirect}
	c.plain = &http.Client{Transport: c.newTransport(), Timeout: o.Timeout, CheckRedirect: limitRedirects(false)}
	// Separate pools matter: federation connections are keyed by server
	// name but may be dialled to an SRV/delegated target, so a connection
	// made for .well-known (or HTTP()) must never serve a federation
	// request for the same name, nor the other way round.
	c.wk = &http.Client{Transport: c.newTransport(), Timeout: o.Timeout, CheckRedirect: limitRedirects(true)}
	return c
}

// HTTP returns a guarded *http.Client for other outbound calls (SMS
// providers, webhooks): every connection, including those made for
// redirects, is checked against the address policy, response bodies are
// capped at MaxResponseBytes, and requests time out after Timeout.
func (c *Client) HTTP() *http.Client { return c.plain }

// CloseIdleConnections closes idle pooled connections.
func (c *Client) CloseIdleConnections() {
	c.fed.CloseIdleConnections()
	c.plain.CloseIdleConnections()
	c.wk.CloseIdleConnections()
}

func limitRedirects(httpsOnly bool) func(*http.Request, []*http.Request) error {
	return func(req *http.Request, via []*http.Request) error {
		if len(via) >= maxRedirects {
			return fmt.Errorf("stopped after %d redirects", maxRedirects)
		}
		if httpsOnly && req.URL.Scheme != "https" {
			return fmt.Errorf("refusing redirect to non-https URL %s", req.URL.Redacted())
		}
		return nil
	}
}

func (c *Client) newTransport() http.RoundTripper {
	var tlsConf *tls.Config
	if c.opts.TLSConfig != nil {
		tlsConf = c.opts.TLSConfig.Clone()
	}
	t := &http.Transport{
		Proxy:                 nil, // a proxy would make the guard check the proxy, not the target
		DialContext:           c.dialContext,
		TLSClientConfig:       tlsConf,
		ForceAttemptHTTP2:     true,
		TLSHandshakeTimeout:   c.opts.Timeout,
		ResponseHeaderTimeout: c.opts.Timeout,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConnsPerHost:   4,
	}
	return &limitTransport{base: t, max: c.opts.MaxResponseBytes, ua: c.opts.UserAgent}
}

// limitTransport sets the User-Agent and caps response bodies.
type limitTransport struct {
	base *http.Transport
	max  int64
	ua   string
}

func (t *limitTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Header.Get("User-Agent") == "" {
		req = req.Clone(req.Context())
		req.Header.Set("User-Agent", t.ua)
	}
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	if resp.ContentLength > t.max {
		resp.Body.Close()
		return nil, fmt.Errorf("%w: Content-Length %d exceeds %d bytes", ErrResponseTooLarge, resp.ContentLength, t.max)
	}
	resp.Body = &limitedBody{rc: resp.Body, n: t.max, max: t.max}
	return resp, nil
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach the pool.
func (t *limitTransport) CloseIdleConnections() { t.base.CloseIdleConnections() }

type limitedBody struct {
	rc  io.ReadCloser
	n   int64 // bytes still allowed
	max int64
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.n < 0 {
		return 0, fmt.Errorf("%w: more than %d bytes", ErrResponseTooLarge, b.max)
	}
	if int64(len(p)) > b.n+1 {
		p = p[:b.n+1]
	}
	n, err := b.rc.Read(p)
	if int64(n) > b.n {
		n = int(b.n)
		b.n = -1
		return n, fmt.Errorf("%w: more than %d bytes", ErrResponseTooLarge, b.max)
	}
	b.n -= int64(n)
	return n, err
}

func (b *limitedBody) Close() error { return b.rc.Close() }

// dialTarget redirects the dial for one URL authority (addr, as the
// transport computes it) to the address discovery chose. It travels in the
// request context, which http.Transport passes on to DialContext.
type dialTarget struct{ addr, target string }

type dialTargetKey struct{}

func withDialTarget(ctx context.Context, addr, target string) context.Context {
	if addr == target {
		return ctx
	}
	return context.WithValue(ctx, dialTargetKey{}, dialTarget{addr: addr, target: target})
}

// dialContext resolves the host itself and checks every address before any
// connection is attempted; the dialer's Control hook checks again on the
// socket actually being connected, so no DNS answer can slip past.
func (c *Client) dialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if t, ok := ctx.Value(dialTargetKey{}).(dialTarget); ok && t.addr == addr {
		addr = t.target
	}
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("dial %s: bad port", addr)
	}
	var ips []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		ips = []netip.Addr{ip}
	} else {
		if ips, err = c.resolveIP(ctx, host); err != nil {
			if de := (*net.DNSError)(nil); errors.As(err, &de) && de.IsNotFound {
				return nil, fmt.Errorf("%w: %w", ErrUnresolvable, err)
			}
			return nil, err
		}
		if len(ips) == 0 {
			return nil, fmt.Errorf("%w: lookup %s: no addresses", ErrUnresolvable, host)
		}
	}
	if !c.opts.AllowPrivate {
		// Like Synapse's blocklisting resolver: one forbidden address
		// condemns the name, so round-robin tricks cannot mix them in.
		for _, ip := range ips {
			if c.forbidden(ip) {
				if ip.String() == host {
					return nil, fmt.Errorf("%w: %s", ErrForbiddenAddress, ip)
				}
				return nil, fmt.Errorf("%w: %s resolves to %s", ErrForbiddenAddress, host, ip)
			}
		}
	}
	d := &net.Dialer{Timeout: c.opts.Timeout, Control: c.controlDial}
	var firstErr error
	for _, ip := range ips {
		conn, err := d.DialContext(ctx, network, netip.AddrPortFrom(ip.WithZone(""), uint16(port)).String())
		if err == nil {
			return conn, nil
		}
		if firstErr == nil {
			firstErr = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, firstErr
}

// controlDial runs after the socket is created and before connect(2).
func (c *Client) controlDial(network, address string, _ syscall.RawConn) error {
	if c.opts.AllowPrivate {
		return nil
	}
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: unparsable address %q", ErrForbiddenAddress, address)
	}
	if c.forbidden(ap.Addr()) {
		return fmt.Errorf("%w: %s", ErrForbiddenAddress, ap.Addr())
	}
	return nil
}

func (c *Client) resolveIP(ctx context.Context, host string) ([]netip.Addr, error) {
	if c.lookupIP != nil {
		return c.lookupIP(ctx, host)
	}
	return c.opts.Resolver.LookupNetIP(ctx, "ip", host)
}

// forbiddenPrefixes are never federation targets: special-purpose ranges
// from the IANA registries, as in Synapse's default ip_range_blacklist.
var forbiddenPrefixes = func() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range []string{
		"0.0.0.0/8",       // "this network", includes unspecified
		"10.0.0.0/8",      // private
		"100.64.0.0/10",   // CGNAT
		"127.0.0.0/8",     // loopback
		"169.254.0.0/16",  // link-local (cloud metadata)
		"172.16.0.0/12",   // private
		"192.0.0.0/24",    // IETF protocol assignments
		"192.0.2.0/24",    // TEST-NET-1
		"192.88.99.0/24",  // 6to4 relay anycast
		"192.168.0.0/16",  // private
		"198.18.0.0/15",   // benchmarking
		"198.51.100.0/24", // TEST-NET-2
		"203.0.113.0/24",  // TEST-NET-3
		"224.0.0.0/4",     // multicast
		"240.0.0.0/4",     // reserved, includes broadcast
		"::/96",           // unspecified, loopback, IPv4-compatible
		"100::/64",        // discard-only
		"2001:db8::/32",   // documentation
		"fc00::/7",        // unique local
		"fe80::/10",       // link-local
		"fec0::/10",       // site-local (deprecated)
		"ff00::/8",        // multicast
	} {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}()

var (
	nat64Prefix = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour   = netip.MustParsePrefix("2002::/16")
)

// ForbiddenIP reports whether ip is outside public unicast space, i.e.
// whether the guard refuses it when AllowPrivate is off. IPv4-mapped,
// NAT64 and 6to4 addresses are judged by the IPv4 address they embed.
func ForbiddenIP(ip netip.Addr) bool {
	ip = ip.WithZone("").Unmap() // Prefix.Contains never matches zoned addresses
	if !ip.IsValid() {
		return true
	}
	for _, p := range forbiddenPrefixes {
		if p.Contains(ip) {
			return true
		}
	}
	b := ip.As16()
	switch {
	case ip.Is6() && nat64Prefix.Contains(ip):
		return ForbiddenIP(netip.AddrFrom4([4]byte(b[12:16])))
	case ip.Is6() && sixToFour.Contains(ip):
		return ForbiddenIP(netip.AddrFrom4([4]byte(b[2:6])))
	}
	return false
}

// callContext bounds a whole call by Timeout.
func (c *Client) callContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.opts.Timeout)
}

// fedDo sends one request to serverName's federation endpoint: discovery,
// then path on the resolved destination with Host/SNI set to Destination.Host.
// Transport failures are wrapped with ErrUnreachable.
func (c *Client) fedDo(ctx context.Context, method, serverName, path string, body []byte) (*http.Response, error) {
	dest, err := c.Resolve(ctx, serverName)
	if err != nil {
		return nil, err
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, "https://"+dest.Host+path, rd)
	if err != nil {
		return nil, fmt.Errorf("%w: bad destination %q: %v", ErrInvalidServerName, dest.Host, err)
	}
	port := req.URL.Port()
	if port == "" {
		port = "443"
	}
	target := dest.URL[len("https://"):]
	req = req.WithContext(withDialTarget(ctx, net.JoinHostPort(req.URL.Hostname(), port), target))
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.fed.Do(req)
	if err != nil {
		// The query can hold a secret (the OpenID token of userinfo);
		// errors end up in logs, so they name the path only.
		var ue *url.Error
		if errors.As(err, &ue) {
			if u, perr := url.Parse(ue.URL); perr == nil {
				u.RawQuery = ""
				ue.URL = u.String()
			}
		}
		return nil, fmt.Errorf("%w: %w", ErrUnreachable, err)
	}
	return resp, nil
}

// readBody reads a (size-capped) response body; read failures count as
// unreachable, except an oversize body, which is the server's fault.
func readBody(resp *http.Response) ([]byte, error) {
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		if errors.Is(err, ErrResponseTooLarge) {
			return nil, fmt.Errorf("%w: %w", ErrInvalidResponse, err)
		}
		return nil, fmt.Errorf("%w: reading response: %w", ErrUnreachable, err)
	}
	return b, nil
}

// statusError builds a StatusError from a non-success answer body.
func statusError(code int, body []byte) *StatusError {
	e := &StatusError{StatusCode: code}
	var m struct {
		Errcode string `json:"errcode"`
		Error   string `json:"error"`
	}
	if json.Unmarshal(body, &m) == nil {
		e.Errcode = m.Errcode
		e.Message = truncate(m.Error, 200)
	}
	return e
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
