package convert

import (
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
)

// ConfigFile, at the top of the spec directory, holds specgen's settings.
// It is not an API document.
//
//	# Files (globs on paths relative to spec/, `*` stays within a folder)
//	# whose operations take precedence over another file's conflicting
//	# definition of the same operation.
//	prefer: ["*.yaml"]
const ConfigFile = "specgen.yaml"

// Config is what ConfigFile says.
type Config struct {
	Prefer []string `yaml:"prefer"`
}

// ReadDir finds every API document under dir, recursively, in path order:
// a YAML file whose top level names its version (`swagger` or `openapi`)
// and has `paths`. Other YAML files (definitions, shared schemas) are
// skipped: documents reach them through $refs. Folders named testdata or
// starting with "." or "_" are not searched (Go's convention). Sources carry
// their path relative to dir, which is all that ever reaches the output,
// so the result does not depend on where the tree sits.
func ReadDir(dir string) ([]Source, error) {
	cfg, err := readConfig(dir)
	if err != nil {
		return nil, err
	}
	root, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	var srcs []Source
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if p != dir && (name == "testdata" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")) {
				return filepath.SkipDir
			}
			return nil
		}
		ext := strings.ToLower(filepath.Ext(name))
		if ext != ".yaml" && ext != ".yml" {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if rel == ConfigFile {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("read spec: %w", err)
		}
		doc, err := ParseYAML(data)
		if err != nil {
			// A file that does not parse is an error only if it says it
			// is an API document; a list of examples, a template or a
			// broken fragment nothing refers to is none of ours.
			if !versionLine.Match(data) {
				return nil
			}
			return fmt.Errorf("%s: %w", rel, err)
		}
		if !IsAPIDocument(doc) {
			return nil
		}
		abs, err := filepath.Abs(p)
		if err != nil {
			return err
		}
		srcs = append(srcs, Source{Name: rel, Data: data, Path: abs, Root: root, Prefer: cfg.prefers(rel)})
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(srcs) == 0 {
		return nil, fmt.Errorf("no API documents (Swagger 2.0 or OpenAPI 3) under %s", dir)
	}
	return srcs, nil
}

// IsAPIDocument reports whether a parsed YAML file is an API description
// rather than a fragment it refers to.
func IsAPIDocument(doc map[string]any) bool {
	_, swagger := doc["swagger"]
	_, openapi := doc["openapi"]
	_, paths := doc["paths"]
	return (swagger || openapi) && paths
}

// versionLine is the top-level key that makes a file an API document.
var versionLine = regexp.MustCompile(`(?m)^(swagger|openapi)\s*:`)

func readConfig(dir string) (Config, error) {
	var cfg Config
	data, err := os.ReadFile(filepath.Join(dir, ConfigFile))
	if os.IsNotExist(err) {
		return cfg, nil
	}
	if err != nil {
		return cfg, err
	}
	doc, err := ParseYAML(data)
	if err != nil {
		return cfg, fmt.Errorf("%s: %w", ConfigFile, err)
	}
	for k, v := range doc {
		if k != "prefer" {
			return cfg, fmt.Errorf("%s: unknown setting %q", ConfigFile, k)
		}
		list, ok := v.([]any)
		if !ok && v != nil {
			return cfg, fmt.Errorf("%s: prefer must be a list of globs", ConfigFile)
		}
		for _, g := range list {
			s, ok := g.(string)
			if _, err := path.Match(s, ""); !ok || err != nil {
				return cfg, fmt.Errorf("%s: prefer: bad glob %v", ConfigFile, g)
			}
			cfg.Prefer = append(cfg.Prefer, s)
		}
	}
	return cfg, nil
}

func (c Config) prefers(rel string) bool {
	for _, g := range c.Prefer {
		if ok, _ := path.Match(g, rel); ok {
			return true
		}
	}
	return false
}
