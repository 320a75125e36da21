"""Delivery: from a mailing's templates to messages handed to a mail server.

Pure building blocks first, with no database and no HTTP, then the rows and the dispatchers
that send them. One message goes:

    at save time    errors = checks.check_templates(subject, html, text)  # refuse if any
                    html = footer.with_unsubscribe_footer(html)  # on every save, never stacks
    once per send   tokens = signing.TrackingTokens.from_settings(settings)
                    prepared = prepare.PreparedMailing(subject=, html=, text=, tokens=)
                    frame = mime.MessageFrame(from_email=, from_name=, reply_to=,
                                              message_id_domain=, dkim_key=)
                    transport = transports.open_transport(smtp_url, TransportOptions(...))
    per recipient   rendered = prepared.render(template.Recipient(...), delivery_id)
                    message = frame.build(rendered, to_email=, date=,
                                          list_unsubscribe_url=rendered.unsubscribe_url)
                    outcome = transport.send(message, from_addr, to_addr)
                    # outcome.status: DELIVERED / DEFERRED (retry) / BOUNCED (suppress)

Modules:
    signing       signed click / open / unsubscribe tokens and their public URLs
    template      merge tags: the Jinja2 sandbox with its bounds, Recipient
    checks        check_templates: a mailing's templates checked at save, as a send renders
    placeholders  hides merge tags from the HTML tools and restores them
    footer        the unsubscribe footer (never stacked) and text derived from HTML
    prepare       PreparedMailing (once per send) -> RenderedMessage (per recipient)
    mime          MessageFrame / build: multipart/alternative, List-Unsubscribe, DKIM
    transports    Transport registry by URL scheme: outbox files, pooled SMTP; Outcome
    kinds         kinds of delivery; each domain registers what its kinds' messages say
    pipeline      this process's transport, signing, DKIM key and pacing
    audience      who may be sent to: one answer for every path
    dispatcher    claims due deliveries, sends them, records the replies, exactly once
    recovery      takes back the claims of dispatchers that died
    outcomes      counts by status, the last deferral
    finished      tells the domains above which deliveries just reached a final status
"""
