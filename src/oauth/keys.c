/* keys.c: the authorization server's signing keys (STUB: the keys part
 * replaces this file). */
#include "oauth.h"

tk_rc tk_oauth_keys_register_sealed(void)
{
    return tk_keyring_register_sealed("oauth_signing_keys", "private_key");
}
