package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"courriel/directory"
)

// runLDAPSchema prints the LDIF an admin loads with
// `ldapadd -Y EXTERNAL -H ldapi:/// -f file` into cn=config.
func runLDAPSchema(_ context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("ldap-schema", stderr)
	var o directory.SchemaOptions
	fs.StringVar(&o.Database, "database", "", "database entry to index and protect (default olcDatabase={1}mdb,cn=config)")
	fs.StringVar(&o.Suffix, "suffix", "", "directory suffix (default dc=xoyize,dc=xyz)")
	fs.StringVar(&o.MailBase, "mail-base", "", "subtree holding mail accounts (default ou=mail,<suffix>)")
	fs.StringVar(&o.ReaderDN, "reader-dn", "", "service account (default cn=mailAccountReader,ou=Manager,<suffix>)")
	schemaOnly := fs.Bool("schema-file", false, "print the slapd.conf (.schema) form of the schema instead")
	var c directory.ClusterSchemaOptions
	fs.StringVar(&c.Role, "cluster", "", "print instead what a cluster adds to a server's cn=config: provider or consumer")
	fs.StringVar(&c.ProviderURL, "provider", "", "consumer: the provider's URL (ldap:// with StartTLS, or ldaps://)")
	fs.StringVar(&c.ProviderCAFile, "provider-ca-file", "", "consumer: CA file verifying the provider (default "+directory.DefaultProviderCAFile+")")
	fs.StringVar(&c.ReplicatorDN, "replicator-dn", "", "account consumers replicate as (default cn=replicator,ou=Manager,<suffix>)")
	replicatorPWFile := fs.String("replicator-password-file", "", "consumer: file holding the replicator's password (default: a placeholder to replace)")
	fs.IntVar(&c.RID, "rid", 0, "consumer: replica id, 1-999 (default 1)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *schemaOnly {
		fmt.Fprint(stdout, directory.SchemaFile())
		return nil
	}
	if err := o.Validate(); err != nil {
		return exitf(2, "%v", err)
	}
	if c.Role == "" {
		fmt.Fprint(stdout, directory.SchemaLDIF(o))
		fmt.Fprint(stdout, "\n# Several courriel nodes on replicated OpenLDAP: after this, load the output\n"+
			"# of `courriel ldap-schema -cluster provider` on the provider and of\n"+
			"# `courriel ldap-schema -cluster consumer -provider URL` on each node's replica.\n")
		return nil
	}
	if *replicatorPWFile != "" {
		pw, err := os.ReadFile(*replicatorPWFile)
		if err != nil {
			return exitf(2, "replicator password: %v", err)
		}
		c.ReplicatorPassword = strings.TrimRight(string(pw), "\r\n")
	}
	if err := c.Validate(o); err != nil {
		return exitf(2, "%v", err)
	}
	fmt.Fprint(stdout, directory.ClusterSchemaLDIF(o, c))
	return nil
}
