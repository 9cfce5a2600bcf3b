package sinks

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"strings"
)

// maxParts bounds the MIME parts walked in one message.
const maxParts = 50

// parseMail parses raw into a Message: header, subject, Message-ID and
// the first text/plain and text/html parts (multipart nesting followed).
// A message that does not parse is returned with ParseError set.
func parseMail(raw []byte) Message {
	var m Message
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		m.ParseError = err.Error()
		return m
	}
	m.Header = msg.Header
	dec := new(mime.WordDecoder)
	if m.Subject, err = dec.DecodeHeader(msg.Header.Get("Subject")); err != nil {
		m.Subject = msg.Header.Get("Subject")
	}
	m.MessageID = msg.Header.Get("Message-Id")
	parts := 0
	if err := walkPart(msg.Header.Get("Content-Type"), msg.Header.Get("Content-Transfer-Encoding"), msg.Body, &m, &parts); err != nil {
		m.ParseError = err.Error()
	}
	return m
}

func walkPart(contentType, cte string, body io.Reader, m *Message, parts *int) error {
	if *parts++; *parts > maxParts {
		return fmt.Errorf("more than %d MIME parts", maxParts)
	}
	if contentType == "" {
		contentType = "text/plain"
	}
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return fmt.Errorf("content-type %q: %w", contentType, err)
	}
	if strings.HasPrefix(mt, "multipart/") {
		mr := multipart.NewReader(body, params["boundary"])
		for {
			p, err := mr.NextRawPart()
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return fmt.Errorf("reading %s part: %w", mt, err)
			}
			if err := walkPart(p.Header.Get("Content-Type"), p.Header.Get("Content-Transfer-Encoding"), p, m, parts); err != nil {
				return err
			}
		}
	}
	if mt != "text/plain" && mt != "text/html" {
		return nil
	}
	var r io.Reader = body
	switch strings.ToLower(cte) {
	case "quoted-printable":
		r = quotedprintable.NewReader(body)
	case "base64":
		r = base64.NewDecoder(base64.StdEncoding, newlineStripper{body})
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return fmt.Errorf("decoding %s part: %w", mt, err)
	}
	if mt == "text/plain" && m.Text == "" {
		m.Text = string(b)
	} else if mt == "text/html" && m.HTML == "" {
		m.HTML = string(b)
	}
	return nil
}

// newlineStripper drops CR and LF, which base64 bodies wrap lines with.
type newlineStripper struct{ r io.Reader }

func (n newlineStripper) Read(p []byte) (int, error) {
	for {
		k, err := n.r.Read(p)
		j := 0
		for _, c := range p[:k] {
			if c != '\r' && c != '\n' {
				p[j] = c
				j++
			}
		}
		if j > 0 || err != nil {
			return j, err
		}
	}
}
