package console

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rtm-project/rtm/rules"
)

// Upload limits: a workbook may be as large as the loader accepts.
const (
	maxUploadBytes  = rules.MaxWorkbookBytes + 1<<20 // the workbook and the form around it
	maxUploadMemory = 1 << 20                        // beyond this, multipart spills to a temp file
)

// liveRow is a table in force, for the rules page.
type liveRow struct {
	Name, Kind, Version, Source, Author string
	Rules                               int
	Published                           time.Time
}

type rulesData struct {
	Tables    []liveRow
	Error     string
	Published []string // tables just published (after a redirect)
}

func (c *Console) rulesPage(w http.ResponseWriter, r *http.Request, s *session) {
	ctx, cancel := context.WithTimeout(r.Context(), kafkaTimeout)
	defer cancel()
	d := rulesData{}
	if p := r.URL.Query().Get("published"); p != "" {
		d.Published = strings.Split(p, ",")
	}
	live, err := rules.List(ctx, c.pub)
	if err != nil {
		d.Error = err.Error()
	}
	for _, n := range slices.Sorted(maps.Keys(live)) {
		t := live[n]
		d.Tables = append(d.Tables, liveRow{Name: n, Kind: string(t.Kind), Version: t.Meta.Version, Source: t.Meta.SourceFile,
			Author: t.Meta.Author, Rules: len(t.Rows), Published: t.Meta.PublishedAt})
	}
	c.render(w, 0, s, "rules", "Rules", "rules", d)
}

// upload is a validated workbook waiting for its publish: what the
// marketer reviewed (the diff against the tables in force then, and the
// simulate summary) is what Publish will write, or nothing.
type upload struct {
	id, user, file string
	data           []byte
	specs          []rules.TableSpec
	created        time.Time
	// live is the version in force of every table the upload changes or
	// adds ("" for none), as of the review: a publish refuses to go on
	// if someone changed one of them since.
	live    map[string]string
	changes []changeView
	same    []string
	summary string
	simErr  string
}

// uploads keeps the last few reviewed uploads for an hour.
type uploads struct {
	mu sync.Mutex
	m  map[string]*upload
}

const (
	maxUploads = 16
	uploadTTL  = time.Hour
)

func newUploads() *uploads { return &uploads{m: map[string]*upload{}} }

func (u *uploads) put(up *upload, now time.Time) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for id, x := range u.m {
		if now.Sub(x.created) > uploadTTL {
			delete(u.m, id)
		}
	}
	for len(u.m) >= maxUploads {
		oldest := ""
		for id, x := range u.m {
			if oldest == "" || x.created.Before(u.m[oldest].created) {
				oldest = id
			}
		}
		delete(u.m, oldest)
	}
	u.m[up.id] = up
}

func (u *uploads) get(id string, now time.Time) *upload {
	u.mu.Lock()
	defer u.mu.Unlock()
	up := u.m[id]
	if up == nil || now.Sub(up.created) > uploadTTL {
		return nil
	}
	return up
}

func (u *uploads) drop(id string) {
	u.mu.Lock()
	delete(u.m, id)
	u.mu.Unlock()
}

// upload validates a workbook exactly as `rtm rules validate` does and,
// when it is valid, computes its diff against the tables in force and its
// simulate summary, and shows them for review; when it is not, it shows
// every error on its cell.
func (c *Console) upload(w http.ResponseWriter, r *http.Request, s *session) {
	f, hdr, err := r.FormFile("workbook")
	if err != nil {
		c.errorPage(w, s, http.StatusBadRequest, "No workbook", "Choose an .xlsx file to upload.")
		return
	}
	defer f.Close()
	data, err := io.ReadAll(f)
	if err != nil {
		c.errorPage(w, s, http.StatusBadRequest, "Upload failed", err.Error())
		return
	}
	name := filepath.Base(filepath.Clean("/" + strings.ReplaceAll(hdr.Filename, "\\", "/")))
	if name == "/" || name == "." {
		name = "upload.xlsx"
	}
	specs, err := validateWorkbook(name, data)
	var rerrs *rules.Errors
	if errors.As(err, &rerrs) {
		c.render(w, http.StatusUnprocessableEntity, s, "errors", "Errors in "+name, "rules", workbookErrors(name, data, rerrs))
		return
	}
	if err != nil {
		c.errorPage(w, s, http.StatusInternalServerError, "Could not read the workbook", err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), kafkaTimeout)
	defer cancel()
	live, err := rules.List(ctx, c.pub)
	if err != nil {
		c.errorPage(w, s, http.StatusBadGateway, "Could not read the rules in force", err.Error())
		return
	}
	up := &upload{id: randomToken(), user: s.User, file: name, data: data, specs: specs, created: c.now(), live: map[string]string{}}
	for _, ch := range rules.Diff(live, specs) {
		switch ch.Op {
		case rules.OpUnchanged:
			// Checked at publish too: the workbook would write this
			// table back over whatever someone published meanwhile.
			up.same = append(up.same, ch.Name)
			up.live[ch.Name] = ch.From
		case rules.OpRemoved:
			// Not in this workbook: a publish leaves it as it is.
		default:
			up.live[ch.Name] = ch.From
			var from *rules.TableSpec
			if t, ok := live[ch.Name]; ok {
				from = &t
			}
			up.changes = append(up.changes, changeViewOf(ch, from, specFor(specs, ch.Name)))
		}
	}
	select {
	case c.simulating <- struct{}{}:
		up.summary, err = c.cfg.Simulate(ctx, specs)
		<-c.simulating
		if err != nil {
			up.simErr = err.Error()
		}
	default:
		up.simErr = "another upload's simulation is running: upload again in a moment to see this one's"
	}
	c.uploads.put(up, c.now())
	http.Redirect(w, r, Prefix+"/rules/upload/"+up.id, http.StatusSeeOther)
}

// validateWorkbook is `rtm rules validate FILE`: the upload is written
// under its own name to a private directory and read by
// rules.LoadWorkbook (which checks the extension and names the file in
// every error), then checked as a whole by rules.Validate.
func validateWorkbook(name string, data []byte) ([]rules.TableSpec, error) {
	dir, err := os.MkdirTemp("", "rtm-console-upload-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return nil, err
	}
	specs, err := rules.LoadWorkbook(path)
	if err != nil {
		return nil, err
	}
	return specs, rules.Validate(specs)
}

func specFor(specs []rules.TableSpec, name string) *rules.TableSpec {
	for i := range specs {
		if specs[i].Name == name {
			return &specs[i]
		}
	}
	return nil
}

type reviewData struct {
	ID, File, User string
	Changes        []changeView
	Unchanged      []string
	Summary        string
	SimulateError  string
	Tables         int
}

func (c *Console) reviewPage(w http.ResponseWriter, r *http.Request, s *session) {
	up := c.uploads.get(r.PathValue("id"), c.now())
	if up == nil {
		c.errorPage(w, s, http.StatusNotFound, "Upload not found", "This upload has expired (uploads are kept for an hour): upload the workbook again.")
		return
	}
	c.render(w, 0, s, "review", "Review "+up.file, "rules", reviewData{ID: up.id, File: up.file, User: up.user, Changes: up.changes,
		Unchanged: up.same, Summary: up.summary, SimulateError: up.simErr, Tables: len(up.specs)})
}

type staleData struct {
	What   string
	Tables []string
	Again  string // where to start over
}

// publish writes a reviewed upload, with the signed-in user as author,
// unless a table it changes was changed by someone else since the review.
func (c *Console) publish(w http.ResponseWriter, r *http.Request, s *session) {
	up := c.uploads.get(r.PathValue("id"), c.now())
	if up == nil {
		c.errorPage(w, s, http.StatusNotFound, "Upload not found", "This upload has expired (uploads are kept for an hour): upload the workbook again.")
		return
	}
	c.publishMu.Lock()
	defer c.publishMu.Unlock()
	ctx, cancel := context.WithTimeout(r.Context(), kafkaTimeout)
	defer cancel()
	live, err := rules.List(ctx, c.pub)
	if err != nil {
		c.audit(r, s, "publish", "failed", "file", up.file, "err", err)
		c.errorPage(w, s, http.StatusBadGateway, "Could not read the rules in force", err.Error())
		return
	}
	var stale []string
	for name, v := range up.live {
		if live[name].Meta.Version != v {
			stale = append(stale, name)
		}
	}
	if len(stale) > 0 {
		slices.Sort(stale)
		c.audit(r, s, "publish", "stale", "file", up.file, "tables", stale)
		c.uploads.drop(up.id)
		c.render(w, http.StatusConflict, s, "stale", "Changed since your review", "rules",
			staleData{What: "Nothing was published: these tables changed since you reviewed the upload", Tables: stale, Again: Prefix + "/rules"})
		return
	}
	rep, err := rules.Publish(ctx, c.pub, up.specs, rules.PublishMeta{Author: s.User, SourceFile: up.file})
	var rerrs *rules.Errors
	if errors.As(err, &rerrs) {
		// Publish also checks the upload against the live tables it
		// keeps (templates, duplicates): shown on the cells the same way.
		c.audit(r, s, "publish", "failed", "file", up.file, "err", err)
		c.render(w, http.StatusUnprocessableEntity, s, "errors", "Errors in "+up.file, "rules", workbookErrors(up.file, up.data, rerrs))
		return
	}
	if err != nil {
		c.audit(r, s, "publish", "failed", "file", up.file, "err", err)
		c.errorPage(w, s, http.StatusBadGateway, "Publish failed", err.Error())
		return
	}
	c.uploads.drop(up.id)
	var names, versions []string
	for _, ch := range rep.Published {
		names = append(names, ch.Name)
		versions = append(versions, ch.Name+"@"+ch.To)
	}
	c.audit(r, s, "publish", "ok", "file", up.file, "published", versions, "unchanged", rep.Unchanged)
	http.Redirect(w, r, Prefix+"/rules?published="+url.QueryEscape(cmp.Or(strings.Join(names, ","), "nothing")), http.StatusSeeOther)
}

// version is one entry of a table's history.
type version struct {
	Version, Author, Source string
	Published               time.Time
	Rules                   int
	Current, Deleted        bool
	// RollbackTo: rolling back to it would change the table in force.
	RollbackTo bool
}

type tableData struct {
	Name       string
	Current    *specView
	Versions   []version
	RolledBack string
	Error      string
}

func (c *Console) tablePage(w http.ResponseWriter, r *http.Request, s *session) {
	name := r.PathValue("name")
	ctx, cancel := context.WithTimeout(r.Context(), kafkaTimeout)
	defer cancel()
	d := tableData{Name: name, RolledBack: r.URL.Query().Get("rolledback")}
	live, err := rules.List(ctx, c.pub)
	var hist []rules.TableSpec
	if err == nil {
		hist, err = rules.History(ctx, c.pub, name)
	}
	if err != nil {
		d.Error = err.Error()
	}
	cur, ok := live[name]
	if ok {
		d.Current = specViewOf(&cur)
	}
	// Newest first. A rollback publishes an old version again, so a
	// version can be listed twice: its newest publication is the one in
	// force, and no entry with its content offers a rollback to it.
	marked := false
	for i := len(hist) - 1; i >= 0; i-- {
		h := hist[i]
		live := ok && h.Meta.Version == cur.Meta.Version
		d.Versions = append(d.Versions, version{Version: h.Meta.Version, Author: h.Meta.Author, Source: h.Meta.SourceFile,
			Published: h.Meta.PublishedAt, Rules: len(h.Rows), Current: live && !marked, Deleted: h.Meta.Version == "",
			RollbackTo: !live && h.Meta.Version != ""})
		marked = marked || live
	}
	if !ok && len(hist) == 0 && err == nil {
		c.errorPage(w, s, http.StatusNotFound, "No such table", fmt.Sprintf("There is no table %q, in force or in the history.", name))
		return
	}
	c.render(w, 0, s, "table", "Table "+name, "rules", d)
}

// findVersion finds a version of a table in its history (a unique prefix
// will do, as for `rtm rules rollback --to`).
func findVersion(hist []rules.TableSpec, v string) (*rules.TableSpec, error) {
	var match *rules.TableSpec
	for i := range hist {
		if v != "" && hist[i].Meta.Version != "" && strings.HasPrefix(hist[i].Meta.Version, v) {
			if match != nil && match.Meta.Version != hist[i].Meta.Version {
				return nil, fmt.Errorf("version %s is ambiguous", v)
			}
			match = &hist[i]
		}
	}
	if match == nil {
		return nil, fmt.Errorf("version %q is not in the table's history", v)
	}
	return match, nil
}

type diffData struct {
	Name     string
	From, To string
	Change   changeView
	// Rollback is set on the confirmation page of a rollback.
	Rollback bool
}

func (c *Console) versionDiffPage(w http.ResponseWriter, r *http.Request, s *session) {
	name := r.PathValue("name")
	ctx, cancel := context.WithTimeout(r.Context(), kafkaTimeout)
	defer cancel()
	hist, err := rules.History(ctx, c.pub, name)
	if err != nil {
		c.errorPage(w, s, http.StatusBadGateway, "Could not read the history", err.Error())
		return
	}
	from, err := findVersion(hist, r.URL.Query().Get("from"))
	var to *rules.TableSpec
	if err == nil {
		to, err = findVersion(hist, r.URL.Query().Get("to"))
	}
	if err != nil {
		c.errorPage(w, s, http.StatusNotFound, "No such version", err.Error())
		return
	}
	ch := rules.Diff(map[string]rules.TableSpec{name: *from}, []rules.TableSpec{*to})[0]
	c.render(w, 0, s, "diff", "Diff of "+name, "rules", diffData{Name: name, From: from.Meta.Version, To: to.Meta.Version,
		Change: changeViewOf(ch, from, to)})
}

// rollbackPage is the confirmation step: what the table in force would
// become, row by row, and one button.
func (c *Console) rollbackPage(w http.ResponseWriter, r *http.Request, s *session) {
	name := r.PathValue("name")
	ctx, cancel := context.WithTimeout(r.Context(), kafkaTimeout)
	defer cancel()
	live, err := rules.List(ctx, c.pub)
	var hist []rules.TableSpec
	if err == nil {
		hist, err = rules.History(ctx, c.pub, name)
	}
	if err != nil {
		c.errorPage(w, s, http.StatusBadGateway, "Could not read the rules", err.Error())
		return
	}
	to, err := findVersion(hist, r.URL.Query().Get("to"))
	if err != nil {
		c.errorPage(w, s, http.StatusNotFound, "No such version", err.Error())
		return
	}
	cur, ok := live[name]
	var from *rules.TableSpec
	if ok {
		from = &cur
	}
	current := map[string]rules.TableSpec{}
	if ok {
		current[name] = cur
	}
	ch := rules.Diff(current, []rules.TableSpec{*to})[0]
	c.render(w, 0, s, "diff", "Roll back "+name, "rules", diffData{Name: name, From: cur.Meta.Version, To: to.Meta.Version,
		Change: changeViewOf(ch, from, to), Rollback: true})
}

// rollback re-publishes an earlier version (rules.Rollback), with the
// signed-in user as author, unless the table changed since the
// confirmation page was shown.
func (c *Console) rollback(w http.ResponseWriter, r *http.Request, s *session) {
	name, to, from := r.PathValue("name"), r.FormValue("to"), r.FormValue("from")
	c.publishMu.Lock()
	defer c.publishMu.Unlock()
	ctx, cancel := context.WithTimeout(r.Context(), kafkaTimeout)
	defer cancel()
	live, err := rules.List(ctx, c.pub)
	if err != nil {
		c.audit(r, s, "rollback", "failed", "table", name, "to", to, "err", err)
		c.errorPage(w, s, http.StatusBadGateway, "Could not read the rules in force", err.Error())
		return
	}
	if live[name].Meta.Version != from {
		c.audit(r, s, "rollback", "stale", "table", name, "to", to)
		c.render(w, http.StatusConflict, s, "stale", "Changed since you looked", "rules",
			staleData{What: "Nothing was rolled back: this table changed since the confirmation page was shown", Tables: []string{name},
				Again: Prefix + "/rules/table/" + url.PathEscape(name)})
		return
	}
	rep, err := rules.Rollback(ctx, c.pub, name, to, rules.PublishMeta{Author: s.User})
	if err != nil {
		c.audit(r, s, "rollback", "failed", "table", name, "to", to, "err", err)
		c.errorPage(w, s, http.StatusBadGateway, "Rollback failed", err.Error())
		return
	}
	c.audit(r, s, "rollback", "ok", "table", name, "from", from, "to", to, "published", len(rep.Published))
	http.Redirect(w, r, Prefix+"/rules/table/"+url.PathEscape(name)+"?rolledback="+url.QueryEscape(to), http.StatusSeeOther)
}

// specView is a table as a grid.
type specView struct {
	Name, Kind, HitPolicy, Version, Sheet string
	Columns                               []string
	Rows                                  []specRow
}

type specRow struct {
	Row   int
	Cells []string
}

func specViewOf(t *rules.TableSpec) *specView {
	v := &specView{Name: t.Name, Kind: string(t.Kind), HitPolicy: string(t.HitPolicy), Version: t.Meta.Version, Sheet: t.Sheet,
		Columns: columnNames(t)}
	for _, r := range t.Rows {
		v.Rows = append(v.Rows, specRow{Row: r.Row, Cells: cellTexts(r.Cells)})
	}
	return v
}

func columnNames(t *rules.TableSpec) []string {
	out := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		out[i] = string(c.Type)
		if c.Template != "" {
			out[i] += " " + c.Template
		}
	}
	return out
}

func cellTexts(vs []rules.Value) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		switch x := v.V.(type) {
		case nil:
		case string:
			out[i] = x
		case float64:
			out[i] = strconv.FormatFloat(x, 'f', -1, 64)
		case bool:
			out[i] = strings.ToUpper(strconv.FormatBool(x))
		default:
			out[i] = fmt.Sprint(x)
		}
	}
	return out
}

// changeView is one table's change, with the cells of every row that
// differs, old and new.
type changeView struct {
	Name, Op, From, To string
	Columns            []string
	// OldColumns is set when the columns themselves changed.
	OldColumns []string
	Rows       []rowDiff
	// NewRules counts the rules of an added table.
	NewRules int
}

type rowDiff struct {
	Op       string
	Row      int
	Old, New []string
	// Changed marks the columns whose cell differs.
	Changed []bool
}

func changeViewOf(ch rules.Change, from, to *rules.TableSpec) changeView {
	v := changeView{Name: ch.Name, Op: string(ch.Op), From: ch.From, To: ch.To}
	if to != nil {
		v.Columns = columnNames(to)
		if ch.Op == rules.OpAdded {
			v.NewRules = len(to.Rows)
		}
	}
	if from != nil && to != nil && !slices.Equal(columnNames(from), v.Columns) {
		v.OldColumns = columnNames(from)
	}
	rowOf := func(t *rules.TableSpec, n int) []string {
		if t == nil {
			return nil
		}
		for _, r := range t.Rows {
			if r.Row == n {
				return cellTexts(r.Cells)
			}
		}
		return nil
	}
	for _, rc := range ch.Rows {
		d := rowDiff{Op: string(rc.Op), Row: rc.Row, Old: rowOf(from, rc.Row), New: rowOf(to, rc.Row)}
		n := max(len(d.Old), len(d.New))
		d.Changed = make([]bool, n)
		for i := range n {
			d.Changed[i] = at(d.Old, i) != at(d.New, i)
		}
		v.Rows = append(v.Rows, d)
	}
	return v
}

func at(s []string, i int) string {
	if i < len(s) {
		return s[i]
	}
	return ""
}

type errorData struct {
	Title, Message string
}

func (c *Console) errorPage(w http.ResponseWriter, s *session, status int, title, msg string) {
	c.render(w, status, s, "error", title, "", errorData{Title: title, Message: msg})
}
