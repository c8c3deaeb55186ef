package conformance

import (
	"encoding/xml"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// Summary counts results.
type Summary struct{ Pass, Fail, Skip int }

// Summarize counts results by status.
func Summarize(results []Result) Summary {
	var s Summary
	for _, r := range results {
		switch r.Status {
		case Pass:
			s.Pass++
		case Fail:
			s.Fail++
		case Skip:
			s.Skip++
		}
	}
	return s
}

func (s Summary) String() string {
	return fmt.Sprintf("%d cases: %d passed, %d failed, %d skipped", s.Pass+s.Fail+s.Skip, s.Pass, s.Fail, s.Skip)
}

// WriteTable writes the results as an aligned table: operation, case,
// result and, for failures and skips, the reason.
func WriteTable(w io.Writer, results []Result) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "OPERATION\tCASE\tRESULT\tREASON")
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Op, r.Case, strings.ToUpper(string(r.Status)), short(oneLine(r.Reason), 300))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintln(w, Summarize(results))
	return err
}

type junitSuites struct {
	XMLName xml.Name     `xml:"testsuites"`
	Suites  []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name     string      `xml:"name,attr"`
	Tests    int         `xml:"tests,attr"`
	Failures int         `xml:"failures,attr"`
	Skipped  int         `xml:"skipped,attr"`
	Time     string      `xml:"time,attr"`
	Cases    []junitCase `xml:"testcase"`
}

type junitCase struct {
	Class   string        `xml:"classname,attr"`
	Name    string        `xml:"name,attr"`
	Time    string        `xml:"time,attr"`
	Failure *junitMessage `xml:"failure,omitempty"`
	Skipped *junitMessage `xml:"skipped,omitempty"`
}

type junitMessage struct {
	Message string `xml:"message,attr"`
	Text    string `xml:",chardata"`
}

// WriteJUnit writes the results as JUnit XML: one test suite, one test case
// per case, the operation as its class name.
func WriteJUnit(w io.Writer, suite string, results []Result) error {
	s := junitSuite{Name: suite}
	var total time.Duration
	for _, r := range results {
		c := junitCase{Class: r.Op, Name: r.Case, Time: seconds(r.Elapsed)}
		total += r.Elapsed
		switch r.Status {
		case Fail:
			s.Failures++
			c.Failure = &junitMessage{Message: short(oneLine(r.Reason), 200), Text: r.Reason}
		case Skip:
			s.Skipped++
			c.Skipped = &junitMessage{Message: r.Reason}
		}
		s.Cases = append(s.Cases, c)
	}
	s.Tests, s.Time = len(results), seconds(total)
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(junitSuites{Suites: []junitSuite{s}}); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}

func seconds(d time.Duration) string { return fmt.Sprintf("%.3f", d.Seconds()) }
