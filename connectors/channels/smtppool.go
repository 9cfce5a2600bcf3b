package channels

import (
	"context"
	"errors"
	"sync"
	"time"

	gomail "github.com/wneessen/go-mail"
	"github.com/wneessen/go-mail/smtp"
)

// smtpPool reuses SMTP sessions. Opening one costs a TCP connect, a TLS
// handshake and AUTH, several round trips before the first byte of mail;
// a session that stays open sends the next message with MAIL, RCPT and
// DATA only (go-mail resets it after each message and checks it with a
// NOOP before the next).
//
// At most size sessions are open at once: a send waits for a free one
// rather than opening more, so a burst never exceeds the connection
// limit submission servers put on one client. A session unused for
// idleTimeout is closed instead of reused, and a session that fails is
// always closed: after an error its state is unknown.
type smtpPool struct {
	client      *gomail.Client
	idleTimeout time.Duration
	now         func() time.Time

	// slots holds one token per session that may be open.
	slots chan struct{}

	mu     sync.Mutex
	idle   []pooledSession // most recently used last
	closed bool
}

type pooledSession struct {
	c    *smtp.Client
	used time.Time
}

func newSMTPPool(c *gomail.Client, size int, idleTimeout time.Duration) *smtpPool {
	return &smtpPool{client: c, idleTimeout: idleTimeout, now: time.Now, slots: make(chan struct{}, size)}
}

// send sends m on a pooled session, or a new one. When a reused session
// turns out to be dead before the message was transmitted (the server
// closed it while it sat idle), it is discarded and the message goes on
// the next session, at the latest on a freshly dialled one; nothing was
// sent on the dead one, so this cannot duplicate the mail. Errors once
// the message was transmitted are returned: the Deliverer decides about
// retries.
func (p *smtpPool) send(ctx context.Context, m *gomail.Msg) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-p.slots }()
	for {
		c, reused := p.take()
		if c == nil {
			var err error
			if c, err = p.client.DialToSMTPClientWithContext(ctx); err != nil {
				return err
			}
		}
		err := p.client.SendWithSMTPClient(c, m)
		if err == nil {
			p.put(c)
			return nil
		}
		_ = c.Close()
		if !reused || !notTransmitted(err) {
			return err
		}
	}
}

// take returns the most recently used idle session still within its idle
// timeout, closing those past it; nil when there is none.
func (p *smtpPool) take() (*smtp.Client, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.idle) > 0 {
		s := p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		if p.now().Sub(s.used) <= p.idleTimeout {
			return s.c, true
		}
		go s.c.Quit() // politely, and off the send path
	}
	return nil, false
}

func (p *smtpPool) put(c *smtp.Client) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		_ = c.Quit()
		return
	}
	p.idle = append(p.idle, pooledSession{c: c, used: p.now()})
}

// close ends the idle sessions; sessions in use are closed when their
// send finishes.
func (p *smtpPool) close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	var errs []error
	for _, s := range p.idle {
		errs = append(errs, p.client.CloseWithSMTPClient(s.c))
	}
	p.idle = nil
	return errors.Join(errs...)
}

// notTransmitted reports whether err happened before any of the message
// reached the server: the session check (NOOP) failed, or MAIL FROM
// failed without a server reply (a broken connection, not a refusal).
func notTransmitted(err error) bool {
	var se *gomail.SendError
	if !errors.As(err, &se) {
		return false
	}
	switch se.Reason {
	case gomail.ErrConnCheck:
		return true
	case gomail.ErrSMTPMailFrom:
		return se.ErrorCode() == 0
	}
	return false
}
