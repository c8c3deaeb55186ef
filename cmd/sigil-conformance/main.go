// Command sigil-conformance checks any Matrix identity server against the
// identity service spec, from the outside, v1 and v2: every operation of
// the API description (gen/openapi.json, derived from upstream's) through
// real flows, with expectations the spec text justifies (version-gated by
// what /_matrix/identity/versions lists); -profile strict adds Sigil's
// stricter choices. It has its own canonical JSON and signature checks and
// shares no code with Sigil's server. See cmd/sigil-conformance/README.md.
//
//	sigil-conformance [flags] BASE_URL
//
// It starts, on loopback only, an SMTP sink the server under test must send
// its mail to, an SMS sink and a fake homeserver (HTTPS, with a CA made for
// this run) the server must be allowed to reach, prints what the server
// must be configured with, optionally starts the server itself (-exec),
// runs every case and prints a table with a summary by cause (and JUnit
// XML with -junit). The exit status is 1 if a case failed that the
// -expect file does not list (or a listed one passed), 2 if the run could
// not start.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/sigil-matrix/sigil/cmd/sigil-conformance/internal/conformance"
)

// patterns is a repeatable flag of regular expressions.
type patterns []*regexp.Regexp

func (p *patterns) String() string { return fmt.Sprint(*p) }
func (p *patterns) Set(s string) error {
	re, err := regexp.Compile(s)
	if err != nil {
		return err
	}
	*p = append(*p, re)
	return nil
}

type options struct {
	baseURL, junit, tokenPattern, smsPattern, smtpListen, smsListen, hsListen, caFile, serverName string
	execCmd, serverLog, profile, expect                                                           string
	only, skip                                                                                    patterns
	mailTimeout, wait, requestTimeout, timeout, shortLifetime                                     time.Duration
	verbose                                                                                       bool
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 1 && (args[0] == "-version" || args[0] == "--version") {
		fmt.Fprintln(stdout, versionString())
		return 0
	}
	var o options
	fs := flag.NewFlagSet("sigil-conformance", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.baseURL, "base-url", "", "base URL of the identity server under test (or the first argument)")
	fs.StringVar(&o.junit, "junit", "", "also write the results as JUnit XML to this file")
	fs.Var(&o.only, "only", "run only the cases whose \"operation/case\" matches this regular expression (repeatable)")
	fs.Var(&o.skip, "skip", "skip the cases whose \"operation/case\" matches this regular expression (repeatable)")
	fs.StringVar(&o.tokenPattern, "token-pattern", conformance.DefaultTokenPattern, "regular expression finding the token in a validation mail (its first group, or the whole match)")
	fs.StringVar(&o.smsPattern, "sms-token-pattern", conformance.DefaultSMSTokenPattern, "regular expression finding the code in a text message (its first group, or the whole match)")
	fs.StringVar(&o.smtpListen, "smtp-listen", "127.0.0.1:0", "loopback address of the SMTP sink")
	fs.StringVar(&o.smsListen, "sms-listen", "127.0.0.1:0", "loopback address of the SMS sink (an HTTP API: every request to it is a text message)")
	fs.StringVar(&o.hsListen, "homeserver-listen", "127.0.0.1:0", "loopback address of the fake homeserver")
	fs.StringVar(&o.caFile, "ca-file", "", "where to write the fake homeserver's CA certificate (default: a file in a new temporary directory)")
	fs.StringVar(&o.serverName, "server-name", "", "the name the server under test signs as (default: learnt from its first signature)")
	fs.StringVar(&o.execCmd, "exec", "", "start the server under test with this shell command once the sink, homeserver and CA file are ready; "+
		"it gets CONFORMANCE_SMTP_HOST, CONFORMANCE_SMTP_PORT, CONFORMANCE_SMS_URL, CONFORMANCE_CA_FILE, CONFORMANCE_HOMESERVER, CONFORMANCE_BASE_URL (and with -short-lifetimes CONFORMANCE_SHORT_LIFETIME), and is stopped with SIGTERM at the end; "+
		"with -exec, a base URL with port 0 (http://127.0.0.1:0) gets a free port")
	fs.StringVar(&o.serverLog, "server-log", "", "file for the -exec command's output (default: next to the CA file)")
	fs.DurationVar(&o.wait, "wait", 60*time.Second, "how long to wait for the server under test to answer before the run")
	fs.DurationVar(&o.mailTimeout, "mail-timeout", 15*time.Second, "how long to wait for a mail or an onbind callback")
	fs.DurationVar(&o.requestTimeout, "request-timeout", 10*time.Second, "how long one request to the server under test may take")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Minute, "how long the whole run may take; cases still running then fail")
	fs.BoolVar(&o.verbose, "v", false, "print each case as it finishes, with the spec text it checks")
	fs.StringVar(&o.profile, "profile", conformance.ProfileSpec, "spec: only what the spec text justifies; strict: also Sigil's stricter choices (errcodes the spec does not name, the r0.1.0 /bind path, ...)")
	fs.StringVar(&o.expect, "expect", "", "expected-failures file: lines \"ID-or-pattern # reason\" (ID as operation/case, * matches anything); listed failures do not fail the run, listed cases that pass do")
	fs.DurationVar(&o.shortLifetime, "short-lifetimes", 0, "the server under test was started with this validation token and session lifetime (the -exec command gets it as CONFORMANCE_SHORT_LIFETIME and CONFORMANCE_SHORT_LIFETIME_SECONDS): run the expiry cases only")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: sigil-conformance [flags] BASE_URL\n       sigil-conformance -version")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if o.baseURL == "" && fs.NArg() == 1 {
		o.baseURL = fs.Arg(0)
	}
	if o.baseURL == "" || fs.NArg() > 1 {
		fs.Usage()
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	code, err := conform(ctx, o, stdout, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "sigil-conformance:", err)
	}
	return code
}

func conform(ctx context.Context, o options, stdout, stderr io.Writer) (int, error) {
	u, err := url.Parse(o.baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return 2, fmt.Errorf("base URL %q is not an absolute http(s) URL", o.baseURL)
	}
	if u.Port() == "0" {
		// Port 0 with -exec: the runner picks a free loopback port for the
		// server it starts (CONFORMANCE_BASE_URL tells the command which).
		if o.execCmd == "" || loopbackOnly(u.Host) != nil {
			return 2, fmt.Errorf("base URL %q: port 0 needs -exec and a loopback IP", o.baseURL)
		}
		if u.Host, err = freePort(u.Hostname()); err != nil {
			return 2, err
		}
		o.baseURL = u.String()
	}
	if o.profile != conformance.ProfileSpec && o.profile != conformance.ProfileStrict {
		return 2, fmt.Errorf("-profile %q: want spec or strict", o.profile)
	}
	var exps []*conformance.Expectation
	if o.expect != "" {
		f, err := os.Open(o.expect)
		if err != nil {
			return 2, fmt.Errorf("-expect: %w", err)
		}
		exps, err = conformance.ParseExpectations(f)
		f.Close()
		if err != nil {
			return 2, fmt.Errorf("-expect %s: %w", o.expect, err)
		}
	}
	tokenRE, err := regexp.Compile(o.tokenPattern)
	if err != nil {
		return 2, fmt.Errorf("-token-pattern: %w", err)
	}
	smsRE, err := regexp.Compile(o.smsPattern)
	if err != nil {
		return 2, fmt.Errorf("-sms-token-pattern: %w", err)
	}
	for _, a := range []string{o.smtpListen, o.smsListen, o.hsListen} {
		if err := loopbackOnly(a); err != nil {
			return 2, err
		}
	}
	sink, err := conformance.StartSMTPSink(o.smtpListen)
	if err != nil {
		return 2, err
	}
	defer sink.Close()
	texts, err := conformance.StartSMSSink(o.smsListen)
	if err != nil {
		return 2, err
	}
	defer texts.Close()
	hs, err := conformance.StartHomeserver(o.hsListen)
	if err != nil {
		return 2, err
	}
	defer hs.Close()
	if o.caFile == "" {
		dir, err := os.MkdirTemp("", "sigil-conformance-")
		if err != nil {
			return 2, err
		}
		defer os.RemoveAll(dir)
		o.caFile = filepath.Join(dir, "homeserver-ca.pem")
	}
	if o.caFile, err = filepath.Abs(o.caFile); err != nil {
		return 2, err
	}
	if err := hs.WriteCA(o.caFile); err != nil {
		return 2, fmt.Errorf("write CA file: %w", err)
	}
	printSetup(stdout, o, sink, texts, hs)

	if o.execCmd != "" {
		stopServer, err := startServer(o, sink, texts, hs, stderr)
		if err != nil {
			return 2, err
		}
		defer stopServer()
	}
	if err := waitReady(ctx, o.baseURL, o.wait); err != nil {
		return 2, err
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	cfg := conformance.Config{
		HTTP:    &http.Client{Timeout: o.requestTimeout},
		BaseURL: o.baseURL, ServerName: o.serverName, Mailbox: sink, SMS: texts, Homeserver: hs,
		TokenPattern: tokenRE, SMSTokenPattern: smsRE, Only: o.only, Skip: o.skip, MailTimeout: o.mailTimeout,
		Profile: o.profile, ShortLifetime: o.shortLifetime,
	}
	if o.verbose {
		cfg.Progress = stderr
	}
	results, err := conformance.Run(ctx, cfg)
	if err != nil {
		return 2, err
	}
	results, unused := conformance.ApplyExpectations(results, exps)
	for _, e := range unused {
		fmt.Fprintf(stderr, "sigil-conformance: %s:%d: %q matched no case of this run\n", o.expect, e.Line, e.Pattern)
	}
	fmt.Fprintln(stdout)
	if err := conformance.WriteTable(stdout, results); err != nil {
		return 2, err
	}
	if o.junit != "" {
		if err := writeJUnit(o.junit, results); err != nil {
			return 2, err
		}
	}
	if !conformance.Summarize(results).OK() {
		return 1, nil
	}
	return 0, nil
}

// loopbackOnly refuses listeners other than loopback: the runner talks to
// the base URL and to its own loopback listeners, nothing else.
func loopbackOnly(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("listen address %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("listen address %q: only loopback IP addresses (127.0.0.0/8, ::1) are allowed", addr)
	}
	return nil
}

// freePort returns host:port with a port free at the time of the call.
func freePort(host string) (string, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return "", fmt.Errorf("pick a port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func printSetup(w io.Writer, o options, sink *conformance.SMTPSink, texts *conformance.SMSSink, hs *conformance.Homeserver) {
	fmt.Fprintf(w, `sigil-conformance: testing %s
Configure the identity server under test with:
  SMTP server        %s (plain SMTP, no TLS; any AUTH PLAIN credentials or none)
  SMS HTTP API       %s (any method and body; it must name the number and the code)
  trusted CA file    %s (the fake homeserver's TLS certificate is issued by it)
  private addresses  allowed: the fake homeserver is %s (server name %s)
  mail and SMS       must contain the token, found with %s and %s
`, o.baseURL, sink.Addr(), texts.URL, o.caFile, hs.URL(), hs.Name, o.tokenPattern, o.smsPattern)
}

// startServer runs the -exec command with the environment describing the
// runner's listeners; the returned function stops it.
func startServer(o options, sink *conformance.SMTPSink, texts *conformance.SMSSink, hs *conformance.Homeserver, stderr io.Writer) (func(), error) {
	if o.serverLog == "" {
		o.serverLog = filepath.Join(filepath.Dir(o.caFile), "server.log")
	}
	logf, err := os.Create(o.serverLog)
	if err != nil {
		return nil, fmt.Errorf("server log: %w", err)
	}
	cmd := exec.Command("sh", "-c", o.execCmd)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(),
		"CONFORMANCE_SMTP_HOST="+sink.Host,
		fmt.Sprintf("CONFORMANCE_SMTP_PORT=%d", sink.Port),
		"CONFORMANCE_SMS_URL="+texts.URL,
		"CONFORMANCE_CA_FILE="+o.caFile,
		"CONFORMANCE_HOMESERVER="+hs.Name,
		"CONFORMANCE_BASE_URL="+o.baseURL,
	)
	if o.shortLifetime > 0 {
		secs := int64((o.shortLifetime + time.Second - 1) / time.Second)
		cmd.Env = append(cmd.Env, "CONFORMANCE_SHORT_LIFETIME="+o.shortLifetime.String(), fmt.Sprintf("CONFORMANCE_SHORT_LIFETIME_SECONDS=%d", secs))
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // stop the whole group the shell starts
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("-exec: %w", err)
	}
	fmt.Fprintf(stderr, "sigil-conformance: started the server under test (pid %d), output in %s\n", cmd.Process.Pid, o.serverLog)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	return func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		logf.Close()
	}, nil
}

// waitReady waits until the server answers GET /_matrix/identity/versions.
func waitReady(ctx context.Context, baseURL string, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	client := &http.Client{Timeout: 2 * time.Second}
	target := strings.TrimSuffix(baseURL, "/") + "/_matrix/identity/versions"
	for {
		req, err := http.NewRequestWithContext(ctx, "GET", target, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the server under test did not answer at %s within %v: %w", target, wait, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func writeJUnit(path string, results []conformance.Result) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("junit: %w", err)
	}
	if err := conformance.WriteJUnit(f, "sigil-conformance", results); err != nil {
		f.Close()
		return fmt.Errorf("junit: %w", err)
	}
	return errors.Join(f.Close())
}
