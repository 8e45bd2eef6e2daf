# The little of google-auth that docs/guide/oauth2.md uses, so that its example is
# type-checked without installing google-auth.
