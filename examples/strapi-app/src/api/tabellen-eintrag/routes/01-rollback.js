// For the tests: see the controller's createThenRollBack.
module.exports = {
  routes: [{ method: 'POST', path: '/tabellen-eintraege/rollback', handler: 'tabellen-eintrag.createThenRollBack' }],
}
