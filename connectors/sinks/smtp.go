package sinks

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
)

// maxMessageBytes caps one mail; larger ones get 552.
const maxMessageBytes = 10 << 20

// Message is one mail the SMTP sink accepted.
type Message struct {
	// Seq numbers accepted mail from 1.
	Seq int64     `json:"seq"`
	At  time.Time `json:"at"`
	// Envelope sender and recipients (MAIL FROM, RCPT TO).
	MailFrom string   `json:"mail_from"`
	RcptTo   []string `json:"rcpt_to"`
	// Header holds the parsed header fields (canonical keys).
	Header    map[string][]string `json:"header"`
	Subject   string              `json:"subject"`
	MessageID string              `json:"message_id"`
	// Text and HTML are the decoded text/plain and text/html parts.
	Text string `json:"text"`
	HTML string `json:"html"`
	// Raw is the message as received.
	Raw []byte `json:"-"`
	// ParseError is why the message could not be parsed, if it could not
	// (the sink still keeps it: it is a sink, not a validator).
	ParseError string `json:"parse_error,omitempty"`
}

// SMTPSink is an SMTP server that keeps what it receives.
type SMTPSink struct {
	srv *smtp.Server
	ln  net.Listener
	dir string
	log *slog.Logger

	mu       sync.Mutex
	msgs     *ring[Message]
	seq      int64
	attempts int
	faults   []int
	// sessions counts SMTP connections accepted; open holds those not
	// yet closed.
	sessions int
	open     map[*smtp.Conn]bool
}

func newSMTPSink(cfg Config) (*SMTPSink, error) {
	if cfg.EMLDir != "" {
		if err := os.MkdirAll(cfg.EMLDir, 0o755); err != nil {
			return nil, fmt.Errorf("smtp sink eml dir: %w", err)
		}
	}
	ln, err := net.Listen("tcp", cfg.SMTPAddr)
	if err != nil {
		return nil, fmt.Errorf("smtp sink: listening on %s: %w", cfg.SMTPAddr, err)
	}
	s := &SMTPSink{ln: ln, dir: cfg.EMLDir, log: cfg.Logger, msgs: newRing[Message](cfg.Keep), open: map[*smtp.Conn]bool{}}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.sessions++
		s.open[c] = true
		return &session{sink: s, conn: c}, nil
	}))
	srv.Domain = "localhost"
	srv.MaxMessageBytes = maxMessageBytes
	srv.MaxRecipients = 100
	srv.ReadTimeout = time.Minute
	srv.WriteTimeout = time.Minute
	srv.ErrorLog = slogPrinter{cfg.Logger}
	s.srv = srv
	return s, nil
}

// Addr is the address the sink listens on (host:port).
func (s *SMTPSink) Addr() string { return s.ln.Addr().String() }

// Messages returns the kept messages, oldest first.
func (s *SMTPSink) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.msgs.all()
}

// Attempts is how many messages clients transmitted (DATA), accepted or
// failed by FailNext.
func (s *SMTPSink) Attempts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.attempts
}

// Sessions is how many SMTP connections clients opened: with a client that
// reuses its sessions, fewer than the messages.
func (s *SMTPSink) Sessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sessions
}

// DropSessions closes every open SMTP connection from the server side, as
// a server does with sessions idle past its timeout.
func (s *SMTPSink) DropSessions() {
	s.mu.Lock()
	conns := make([]*smtp.Conn, 0, len(s.open))
	for c := range s.open {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

// FailNext makes the next n transmitted messages fail with SMTP reply
// code (4xx temporary, 5xx permanent) after their data was read.
func (s *SMTPSink) FailNext(n, code int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.faults = append(s.faults, code)
	}
}

func (s *SMTPSink) serve() error {
	err := s.srv.Serve(s.ln)
	if errors.Is(err, smtp.ErrServerClosed) {
		return nil
	}
	return err
}

// close stops the server. It also closes the listener itself: go-smtp's
// Close only closes listeners that Serve has registered, and Serve may not
// have started yet.
func (s *SMTPSink) close() error {
	err := s.srv.Close()
	if lerr := s.ln.Close(); lerr != nil && !errors.Is(lerr, net.ErrClosed) && err == nil {
		err = lerr
	}
	return err
}

// receive handles one transmitted message: a planned fault, or keep it.
func (s *SMTPSink) receive(from string, to []string, raw []byte) error {
	s.mu.Lock()
	s.attempts++
	if len(s.faults) > 0 {
		code := s.faults[0]
		s.faults = s.faults[1:]
		s.mu.Unlock()
		return &smtp.SMTPError{Code: code, EnhancedCode: smtp.EnhancedCode{code / 100, 0, 0}, Message: "failure injected by the sink"}
	}
	s.seq++
	m := parseMail(raw)
	m.Seq, m.At, m.MailFrom, m.RcptTo, m.Raw = s.seq, time.Now().UTC(), from, to, raw
	s.msgs.push(m)
	s.mu.Unlock()

	s.log.Info("mail received", "seq", m.Seq, "message_id", m.MessageID, "bytes", len(raw))
	if s.dir != "" {
		name := filepath.Join(s.dir, fmt.Sprintf("%08d-%s.eml", m.Seq, fileSafe(m.MessageID)))
		if err := os.WriteFile(name, raw, 0o644); err != nil {
			// the mail is kept in memory; a full disk must not bounce it
			s.log.Warn("writing eml file", "file", name, "err", err)
		}
	}
	return nil
}

// fileSafe keeps the letters, digits and -._ of a Message-ID.
func fileSafe(id string) string {
	id = strings.Trim(id, "<>")
	var b strings.Builder
	for _, r := range id {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '.', r == '_':
			b.WriteRune(r)
		case r == '@':
			b.WriteByte('_')
		}
		if b.Len() >= 80 {
			break
		}
	}
	if b.Len() == 0 {
		return "mail"
	}
	return b.String()
}

// session is one SMTP connection's transaction state.
type session struct {
	sink *SMTPSink
	conn *smtp.Conn
	from string
	to   []string
}

func (s *session) Mail(from string, _ *smtp.MailOptions) error { s.from = from; return nil }

func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.to = append(s.to, to)
	return nil
}

func (s *session) Data(r io.Reader) error {
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, r); err != nil {
		return err
	}
	return s.sink.receive(s.from, s.to, buf.Bytes())
}

func (s *session) Reset() { s.from, s.to = "", nil }
func (s *session) Logout() error {
	s.sink.mu.Lock()
	defer s.sink.mu.Unlock()
	delete(s.sink.open, s.conn)
	return nil
}

// slogPrinter adapts slog to go-smtp's Printf logger.
type slogPrinter struct{ log *slog.Logger }

func (p slogPrinter) Printf(format string, v ...any) { p.log.Warn(fmt.Sprintf(format, v...)) }
func (p slogPrinter) Println(v ...any)               { p.log.Warn(fmt.Sprint(v...)) }
