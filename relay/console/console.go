// Package console is the relay's web console, served on the admin listener
// (docs/reference.md, "Console"): server-rendered pages from html/template
// with one small script and one style sheet, all embedded. The pages hold no
// data; the script reads and acts through the admin JSON API with the
// browser's session cookie. The package knows nothing of the relay: the
// caller mounts it and says what the admin token is.
package console

import (
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"strings"
	"time"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Options configure the console.
type Options struct {
	// Token returns the admin token in force ("" when none is set, and the
	// console needs no login). Required.
	Token func() string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// page is one console page: its path pattern, template and navigation
// label ("" keeps it out of the navigation).
type page struct {
	pattern, name, title, nav string
}

// pages lists the console's pages in navigation order.
var pages = []page{
	{"GET /{$}", "overview", "Overview", "Overview"},
	{"GET /events", "events", "Live feed", "Live feed"},
	{"GET /events/{id}", "event", "Event", ""},
	{"GET /dead-letters", "deadletters", "Dead letters", "Dead letters"},
	{"GET /rules", "rules", "Rules", "Rules"},
	{"GET /config", "config", "Config", "Config"},
}

// navItem is a navigation link as the layout shows it.
type navItem struct {
	Href, Label string
	Current     bool
}

// pageData is what a page's template sees.
type pageData struct {
	Title string
	Page  string
	Nav   []navItem
	// Auth is set when a token is in force (the layout shows "Log out").
	Auth bool
	// ID is the event id of the event page.
	ID string
	// Next and Error are the login form's.
	Next, Error string
}

// Mount registers the console's routes on mux: the pages, /login,
// /logout and /static/. With a token in force a page without a valid
// session cookie redirects to /login; the JSON API is the caller's, and it
// should accept the cookie (Authorized) besides its bearer token.
func Mount(mux *http.ServeMux, o Options) {
	if o.Now == nil {
		o.Now = time.Now
	}
	c := &console{opts: o, tmpl: parseTemplates()}
	for _, p := range pages {
		mux.Handle(p.pattern, c.secure(c.page(p)))
	}
	mux.Handle("GET /login", c.secure(http.HandlerFunc(c.loginForm)))
	mux.Handle("POST /login", c.secure(http.HandlerFunc(c.login)))
	mux.Handle("POST /logout", c.secure(http.HandlerFunc(c.logout)))
	static, _ := fs.Sub(staticFS, "static")
	mux.Handle("GET /static/", c.secure(http.StripPrefix("/static/", http.FileServerFS(static))))
}

type console struct {
	opts Options
	tmpl map[string]*template.Template
}

func parseTemplates() map[string]*template.Template {
	out := map[string]*template.Template{}
	for _, name := range append(pageNames(), "login") {
		out[name] = template.Must(template.ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html"))
	}
	return out
}

func pageNames() []string {
	names := make([]string, len(pages))
	for i, p := range pages {
		names[i] = p.name
	}
	return names
}

// secure sets the headers every console answer carries: a content security
// policy that allows only the console's own script and styles, no framing,
// no referrer, no caching of pages, and revalidation of the script and
// style sheet.
func (c *console) secure(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "no-referrer")
		if strings.HasPrefix(r.URL.Path, "/static/") {
			hd.Set("Cache-Control", "no-cache") // revalidate: an upgrade changes them
		} else {
			hd.Set("Cache-Control", "no-store")
		}
		h.ServeHTTP(w, r)
	})
}

// signedIn reports whether r may see the console: no token is in force, or
// r has a valid session.
func (c *console) signedIn(r *http.Request) bool {
	token := c.opts.Token()
	return token == "" || Authorized(r, token, c.opts.Now())
}

func (c *console) page(p page) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !c.signedIn(r) {
			http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		c.render(w, http.StatusOK, p.name, pageData{Title: p.title, Page: p.name, ID: r.PathValue("id")})
	})
}

func (c *console) render(w http.ResponseWriter, code int, name string, d pageData) {
	d.Auth = c.opts.Token() != ""
	for _, p := range pages {
		if p.nav != "" && d.Page != "login" {
			href := strings.TrimSuffix(strings.TrimPrefix(p.pattern, "GET "), "{$}")
			d.Nav = append(d.Nav, navItem{Href: href, Label: p.nav, Current: p.name == d.Page || (p.name == "events" && d.Page == "event")})
		}
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	_ = c.tmpl[name].ExecuteTemplate(w, "layout", d)
}

func (c *console) loginForm(w http.ResponseWriter, r *http.Request) {
	next := safeNext(r.URL.Query().Get("next"))
	if c.signedIn(r) {
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	c.render(w, http.StatusOK, "login", pageData{Title: "Log in", Page: "login", Next: next})
}

// login checks the submitted token in constant time and, when it is the
// admin token, sets the session cookie and goes on to next.
func (c *console) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	_ = r.ParseForm()
	next := safeNext(r.PostFormValue("next"))
	token := c.opts.Token()
	if token == "" {
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	got, want := sha256.Sum256([]byte(r.PostFormValue("token"))), sha256.Sum256([]byte(token))
	if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
		c.render(w, http.StatusUnauthorized, "login", pageData{Title: "Log in", Page: "login", Next: next, Error: "That is not the admin token."})
		return
	}
	http.SetCookie(w, sessionCookie(r, NewSession(token, c.opts.Now()), int(SessionLifetime/time.Second)))
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (c *console) logout(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, sessionCookie(r, "", -1))
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// safeNext keeps a redirect after login on this site: a path, never a URL
// of another host ("//evil", "/\evil").
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") || strings.ContainsAny(next, "\r\n") {
		return "/"
	}
	return next
}
